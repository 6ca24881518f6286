"""Run the comparisons: each side of each one in its own worker process, peers only where installed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cmt.vllm_engine import INSTALL_HINT as VLLM_INSTALL_HINT
from perf.settings import ROOT

# Comparison -> (our side, the peer's side or None, the peer's import name and what to call it).
BENCHES = {
    "sft": ("ours", "peer", "trl", "TRL SFTTrainer"),
    "rl": ("ours", "peer", "trl", "TRL GRPOTrainer"),
    "rl_vllm": ("ours", "peer", "trl", "TRL GRPOTrainer"),
    "limit": ("ours", None, None, None),
    "limit_vllm": ("ours", None, None, None),
    "eval": ("ours", "peer", "lm_eval", "lm-evaluation-harness"),
    "eval_vllm": ("ours", "peer", "lm_eval", "lm-evaluation-harness"),
    "comt": ("comt", "cot", None, None),
}
INSTALL_HINT = 'pip install -e ".[perf]"'
# Comparison -> (a module both its sides need, the one line saying how to install it): skipped without it.
NEEDS = {bench: ("vllm", VLLM_INSTALL_HINT) for bench in ("rl_vllm", "limit_vllm", "eval_vllm")}


class PeerMissingError(RuntimeError):
    """A peer framework is not installed; the message is the one line the harness prints."""


def require_peer(module: str, label: str) -> None:
    """Raise :class:`PeerMissingError` naming the install command when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise PeerMissingError(f"perf: {label} is not installed ({module}); install the peers with "
                               f"`{INSTALL_HINT}` to compare with it. Measuring our side only.")


def one_gpu(device: str, visible: str | None) -> tuple[str, str | None]:
    """The worker's device and ``CUDA_VISIBLE_DEVICES`` for ``--device``: on a GPU, that GPU alone, as ``cuda``.

    Lightning's ``devices=1`` trains on the first visible GPU whatever index ``cuda:N`` names, and the HF
    Trainer under TRL spreads over every visible GPU (DataParallel, a batch per GPU); with one GPU visible
    both sides use the one asked for. ``visible`` is the parent's own ``CUDA_VISIBLE_DEVICES``, which the
    index counts in.
    """
    if not device.startswith("cuda"):
        return device, visible
    index = int(device.partition(":")[2] or 0)
    chosen = visible.split(",")[index].strip() if visible else str(index)
    return "cuda", chosen


def run_worker(bench: str, side: str, settings: dict[str, Any], workdir: Path,
               timeout: float | None = None) -> dict[str, Any]:
    """One side in a fresh ``python -m perf.worker`` process; its JSON result, or ``{"error": ...}``."""
    env = dict(os.environ)
    device, visible = one_gpu(str(settings["device"]), env.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    settings_file = workdir / "settings.json"
    settings_file.write_text(json.dumps({**settings, "device": device}))
    out = workdir / f"{bench}_{side}.json"
    log = workdir / "logs" / f"{bench}_{side}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if settings.get("threads"):
        env["OMP_NUM_THREADS"] = str(settings["threads"])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-m", "perf.worker", bench, side, str(settings_file), str(workdir), str(out)]
    started = time.perf_counter()
    with open(log, "w") as handle:
        try:
            subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=timeout,
                           check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s (log: {log})"}
    if not out.is_file():
        return {"error": f"the worker wrote no result (log: {log})"}
    result = json.loads(out.read_text())
    result["worker_s"] = time.perf_counter() - started
    if "error" in result:
        result["error"] = f"{result['error']} (log: {log})"
    return result


def same_as_earlier(bench: str, side: str, settings: dict[str, Any],
                    results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """An identical side's result already measured in this run, marked ``same_as``; None when there is none.

    rl_vllm's TRL side with ``vllm.trl_sampler: hf`` is rl's TRL side: same trainer, sampler and settings.
    """
    if bench == "rl_vllm" and side == "peer" and settings["vllm"]["trl_sampler"] == "hf":
        earlier = results.get("rl", {}).get("peer")
        if earlier is not None and "error" not in earlier:
            return {**earlier, "sampler": "hf", "same_as": "rl/peer"}
    return None


def run(benches: list[str], settings: dict[str, Any], workdir: str | Path | None = None,
        say=print) -> dict[str, dict[str, Any]]:
    """Run ``benches`` in order; returns ``{bench: {side: result}}`` (peer sides absent where not installed)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="cmt-perf-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"perf: model={settings['model']} device={settings['device']} dtype={settings['dtype']} "
        f"threads={settings.get('threads') or 'default'}; work folder {workdir}")
    prepared = run_worker("prepare", "model", settings, workdir)
    if "error" in prepared:
        raise RuntimeError(f"perf: could not build model {settings['model']!r}: {prepared['error']}")
    results: dict[str, dict[str, Any]] = {"_model": {"model": prepared}}
    for bench in benches:
        needed, hint = NEEDS.get(bench, (None, None))
        if needed is not None and importlib.util.find_spec(needed) is None:
            say(f"perf: {bench} skipped: {hint}")
            continue
        ours, peer, module, label = BENCHES[bench]
        sides = {ours: None, **({peer: None} if peer else {})}
        if module is not None:
            try:
                require_peer(module, label)
            except PeerMissingError as missing:
                say(str(missing))
                sides.pop(peer)
        results[bench] = {}
        for side in sides:
            earlier = same_as_earlier(bench, side, settings, results)
            if earlier is not None:
                say(f"perf: {bench}/{side} is {earlier['same_as']} (same settings), measured once")
                results[bench][side] = earlier
                continue
            started = time.perf_counter()
            result = run_worker(bench, side, settings, workdir)
            if "error" in result:
                say(f"perf: {bench}/{side} failed: {result['error']}")
            else:
                say(f"perf: {bench}/{side} done in {time.perf_counter() - started:.0f} s")
            results[bench][side] = result
    return results
