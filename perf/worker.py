"""One side of one comparison, in its own process: ``python -m perf worker BENCH SIDE SETTINGS WORKDIR OUT``.

The parent (perf.runner) starts it, so that each side's peak memory is its own; it writes one JSON object
to OUT: the side's measurements plus its peak RSS (and peak GPU memory), or ``{"error": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from perf.measure import TreeRss, gpu_peak_mb, peak_rss_mb


def _task(bench: str, side: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    if bench == "prepare":
        from perf.models import prepare

        return lambda s, w: prepare(s["model"], s["dtype"], f"{w}/model", int(s["seed"]))
    if bench == "sft":
        from perf import sft

        return {"ours": sft.ours, "peer": sft.trl}[side]
    if bench == "comt":
        from perf import sft

        return {"comt": lambda s, w: sft.ours(s, w, "comt", "comt"),
                "cot": lambda s, w: sft.ours(s, w, "cot", "comt")}[side]
    if bench == "rl":
        from perf import rl

        return {"ours": rl.ours, "peer": rl.trl}[side]
    if bench == "rl_vllm":
        from perf import rl

        return {"ours": lambda s, w: rl.ours(s, w, "vllm"),
                "peer": lambda s, w: rl.trl(s, w, s["vllm"]["trl_sampler"])}[side]
    if bench == "limit":
        from perf import limit

        return {"ours": limit.bare_parts}[side]
    if bench == "limit_vllm":
        from perf import limit_vllm

        return {"ours": limit_vllm.bare_parts}[side]
    if bench == "eval":
        from perf import evaluation

        return {"ours": evaluation.ours, "peer": evaluation.lm_eval}[side]
    if bench == "eval_vllm":
        from perf import evaluation_vllm

        return {"ours": evaluation_vllm.ours, "peer": evaluation_vllm.lm_eval}[side]
    raise ValueError(f"unknown benchmark {bench!r}")


def main(bench: str, side: str, settings_path: str, workdir: str, out: str) -> int:
    with open(settings_path) as handle:
        settings = json.load(handle)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    started = time.perf_counter()
    # A vLLM engine may run in its own process: its memory counts with the side's (sampled, see TreeRss).
    tree = TreeRss().start() if "vllm" in bench else None
    try:
        import torch

        if settings.get("threads"):
            torch.set_num_threads(int(settings["threads"]))
        if str(settings["device"]).startswith("cuda") and settings["dtype"] == "float32":
            # float32 matrix products on tensor cores (TF32), on both sides alike: the peak MFU divides by.
            torch.set_float32_matmul_precision("high")
        torch.manual_seed(int(settings["seed"]))
        result = _task(bench, side)(settings, workdir)
        code = 0
    except Exception as error:  # noqa: BLE001 (reported to the parent as one line, the traceback in the log)
        traceback.print_exc()
        result, code = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}, 1
    result.update({"peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": gpu_peak_mb(settings["device"]),
                   "process_s": time.perf_counter() - started})
    if tree is not None:
        result["peak_tree_rss_mb"] = tree.stop()
    with open(out, "w") as handle:
        json.dump(result, handle)
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
