"""``python -m perf all``: the side-by-side performance table (issue #7).

    python -m perf all                                  # every comparison on the tiny-random shape, CPU
    python -m perf sft rl               # some of them: sft rl limit rl_vllm limit_vllm eval eval_vllm comt
    python -m perf rl rl_vllm limit_vllm --model smollm2  # the RL step, built-in sampler vs vLLM rollouts
    python -m perf eval eval_vllm --model smollm2       # eval, built-in loop and vLLM, vs lm-eval's hf and vllm
    python -m perf all --model tiny                     # the bundled pretrained tiny model (real answers)
    python -m perf all --model qwen2.5-0.5b-shape --device cuda --dtype bfloat16     # a GPU; reports MFU
    python -m perf rl --set rl.steps=6 --set threads=1  # any perf/config.yaml setting

Prints the table and writes it, with every side's raw measurements, as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import sys

from perf import report, runner
from perf.models import PRETRAINED, SHAPES
from perf.settings import ROOT, load_settings

ORDER = ("sft", "rl", "limit", "rl_vllm", "limit_vllm", "eval", "eval_vllm", "comt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="+", choices=("all", *ORDER), help="what to measure (all: everything)")
    parser.add_argument("--model", choices=PRETRAINED + tuple(SHAPES),
                        help="model (default tiny-random): pretrained tiny or smollm2, or a shape with random "
                             "weights")
    parser.add_argument("--device", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help="default: float32 on a CPU, bfloat16 on a GPU")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: torch's own)")
    parser.add_argument("--peak-flops", type=float, help="device peak FLOP/s for MFU (default: looked up for GPUs)")
    parser.add_argument("--config", help="settings file (default: perf/config.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--out", help="JSON output (default: perf/results/<model>-<device>.json)")
    parser.add_argument("--workdir", help="folder for the saved model, worker logs and outputs (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dtype = args.dtype
    if dtype is None and args.device and args.device.startswith("cuda"):
        dtype = "bfloat16"
    overrides = list(args.set) + ([f"threads={args.threads}"] if args.threads else [])
    try:
        settings = load_settings(args.config, overrides, model=args.model, device=args.device, dtype=dtype,
                                 peak_flops=args.peak_flops)
    except (ValueError, FileNotFoundError) as error:
        print(f"perf: {error}", file=sys.stderr)
        return 2
    benches = list(ORDER) if "all" in args.benches else [b for b in ORDER if b in args.benches]
    try:
        results = runner.run(benches, settings, args.workdir)
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    rows = report.build_rows(results)
    print()
    print(report.render(rows))
    out = args.out or ROOT / "perf" / "results" / f"{settings['model']}-{settings['device'].replace(':', '')}.json"
    path = report.write(report.document(results, settings, rows), out)
    print(f"\nperf: wrote {path}")
    failed = [f"{bench}/{side}" for bench, sides in results.items() if not bench.startswith("_")
              for side, result in sides.items() if "error" in result]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
