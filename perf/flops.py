"""Model FLOPs and utilisation (MFU): FLOPs from the parameter count and token counts, over a peak table.

Per token, a forward pass costs ``2 * N`` FLOPs and a forward + backward ``6 * N``, with ``N`` the
parameters that take part in matrix products (every parameter but the input embedding; a tied embedding
counts once, as the output layer), plus attention's ``4 * L * d * T`` per token forward over a context
of ``T`` (halved for causal masking; times three with the backward). MFU is achieved model FLOP/s over
the device's peak dense FLOP/s for the dtype; TF32/BF16 tensor-core peaks from the vendors' data sheets
(the workers turn TF32 on for float32 runs on a GPU, so that peak is the one they can reach).
"""

from __future__ import annotations

# (substring of torch.cuda.get_device_name(), dtype) -> dense peak FLOP/s (no sparsity).
PEAK_FLOPS = {
    ("H200", "bfloat16"): 989.4e12, ("H200", "float16"): 989.4e12, ("H200", "float32"): 494.7e12,
    ("H100", "bfloat16"): 989.4e12, ("H100", "float16"): 989.4e12, ("H100", "float32"): 494.7e12,
    ("A100", "bfloat16"): 312e12, ("A100", "float16"): 312e12, ("A100", "float32"): 156e12,
    ("L40S", "bfloat16"): 362e12, ("L40S", "float16"): 362e12, ("L40S", "float32"): 183e12,
    ("A10G", "bfloat16"): 125e12, ("A10G", "float16"): 125e12, ("A10G", "float32"): 62.5e12,
    ("L4", "bfloat16"): 121e12, ("L4", "float16"): 121e12, ("L4", "float32"): 60e12,
}


def peak_flops(device: str, dtype: str, override: float | None = None) -> float | None:
    """The peak FLOP/s to divide by: ``override`` when given, else the table's entry for the GPU, else None."""
    if override:
        return float(override)
    if not str(device).startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    # Longest key first, so that "L40S" wins over "L4".
    for (gpu, kind), value in sorted(PEAK_FLOPS.items(), key=lambda item: -len(item[0][0])):
        if gpu in name and kind == dtype:
            return value
    return None


def matmul_params(model) -> int:
    """Parameters taking part in matrix products: all but the input embedding (unless tied to the output)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    return total if tied else total - embedding.numel()


def flops_per_token(n_params: int, layers: int, hidden: int, context: float, backward: bool) -> float:
    """FLOPs of one token: ``2N`` (+ causal attention ``2·L·d·T``), times 3 with the backward pass."""
    forward = 2.0 * n_params + 2.0 * layers * hidden * context
    return 3.0 * forward if backward else forward


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over ``peak``; None without a peak or a time."""
    if not peak or seconds <= 0:
        return None
    return flops / seconds / peak
