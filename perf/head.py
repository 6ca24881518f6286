"""``python -m perf.head``: the chunked LM head (`cmt.lm_head`) against full logits, with a real vocabulary.

The harness's shapes keep the tiny tokenizer's 602 ids, whose logits cost nothing. Here the model has a
real vocabulary (Qwen2.5's 151,936 ids by default; token ids stay below the tiny tokenizer's, the other
rows of the head are there all the same) and two training passes run with ``model.logits_chunk_tokens``
null (full logits) and set:

- ``sft``: one forward + backward of `cmt.modules.sft.SFTModule` over a batch of ``[prompt | target]`` rows;
- ``rl``: one forward + backward of a micro-batch of rollouts through `cmt.rl.forward.completion_logprobs`
  (prompts once, the entropy diagnostic on), with a per-token loss on the completion tokens.

Each (pass, setting) runs in a fresh process, so its peak resident memory is its own; the time is the
median of ``--repeats`` passes after one warm-up.

    python -m perf.head                                       # hidden 256, 4 layers, vocab 151,936
    python -m perf.head --hidden 896 --layers 2 --batch 4     # Qwen2.5-0.5B's width
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from perf.measure import current_rss_mb, median, peak_rss_mb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf.head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=151_936, help="vocabulary size (default: Qwen2.5's)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size (default: the tiny model's)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="SFT rows; RL rollouts are 2x (4 per prompt)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens per row")
    parser.add_argument("--target", type=int, default=256, help="target (SFT) or completion (RL) tokens per row")
    parser.add_argument("--chunk", type=int, default=1024, help="model.logits_chunk_tokens of the chunked runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(args: argparse.Namespace):
    """A random-weight Qwen2 model: the requested width, depth and vocabulary, heads of 64 dimensions (one
    key-value head), an MLP 3x the width; the tiny model's config for the rest."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cmt.models import bundled_path

    config = AutoConfig.from_pretrained(str(bundled_path("tiny")))
    heads = max(args.hidden // 64, 1)
    config.update({"vocab_size": args.vocab, "hidden_size": args.hidden, "intermediate_size": args.hidden * 3,
                   "num_hidden_layers": args.layers, "num_attention_heads": heads, "num_key_value_heads": 1,
                   "max_position_embeddings": args.prompt + args.target + 1})
    config.layer_types = ["full_attention"] * args.layers
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).train()


def sft_pass(model, args: argparse.Namespace, chunk: int | None):
    """``() -> None``: one SFT forward + backward over ``batch`` rows, the prompt's labels masked."""
    import torch

    from cmt.data.sft import IGNORE_INDEX
    from cmt.modules.sft import SFTModule

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 600, (args.batch, args.prompt + args.target), generator=generator)
    labels = ids.clone()
    labels[:, :args.prompt] = IGNORE_INDEX
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    module = SFTModule(model, lambda params: torch.optim.AdamW(params), logits_chunk_tokens=chunk)

    def run() -> None:
        module(batch).backward()
        model.zero_grad(set_to_none=True)
    return run


def rl_pass(model, args: argparse.Namespace, chunk: int | None):
    """``() -> None``: one micro-batch of ``2 * batch`` rollouts (4 per prompt) forward + backward."""
    import torch

    from cmt.rl.batch import Batch
    from cmt.rl.forward import completion_logprobs

    group, rollouts = 4, 2 * args.batch
    generator = torch.Generator().manual_seed(2)
    prompts = torch.randint(2, 600, (rollouts // group, args.prompt), generator=generator)
    tokens = torch.randint(2, 600, (rollouts, args.target), generator=generator)
    lengths = torch.randint(args.target // 2, args.target + 1, (rollouts,), generator=generator)
    batch = Batch(prompts, torch.ones_like(prompts), tokens, lengths, group)
    rows = batch.rows(torch.arange(rollouts))

    def run() -> None:
        logprobs, _ = completion_logprobs(model, rows, 1.0, chunk, entropy=True)
        (-(logprobs * rows["mask"]).sum() / rows["mask"].sum()).backward()
        model.zero_grad(set_to_none=True)
    return run


def measure_one(args: argparse.Namespace, name: str, chunk: int | None) -> dict[str, Any]:
    """Time one pass and read this process's peak memory above the loaded model."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args)
    loaded = current_rss_mb() or 0.0
    run = {"sft": sft_pass, "rl": rl_pass}[name](model, args, chunk)
    times = []
    for _ in range(args.repeats + 1):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"pass": name, "chunk": chunk, "seconds": median(times[1:]), "peak_over_model_mb": peak_rss_mb() - loaded}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        name, chunk = args.one.split(":")
        print(json.dumps(measure_one(args, name, None if chunk == "none" else int(chunk))))
        return 0
    passed = list(argv if argv is not None else sys.argv[1:])
    print(f"vocab {args.vocab}, hidden {args.hidden}, {args.layers} layers; SFT {args.batch} rows, RL "
          f"{2 * args.batch} rollouts; {args.prompt} prompt + {args.target} target tokens a row")
    print(f"{'pass':<5} {'logits_chunk_tokens':>20} {'s':>8} {'peak MiB':>9}")
    for name in ("sft", "rl"):
        for chunk in ("none", str(args.chunk)):
            out = subprocess.run([sys.executable, "-m", "perf.head", *passed, "--one", f"{name}:{chunk}"],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:<5} {result['chunk']!s:>20} {result['seconds']:>8.2f} {result['peak_over_model_mb']:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
