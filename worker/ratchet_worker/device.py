"""Device and precision choices, in one place, so CPU, one GPU and FSDP runs share the code."""

from __future__ import annotations

from typing import Any


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_supported() -> bool:
    import torch

    return has_cuda() and torch.cuda.is_bf16_supported()


def inference_device() -> str:
    return "cuda" if has_cuda() else "cpu"


def inference_dtype():
    """bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU (CPU half precision is slow)."""
    import torch

    if bf16_supported():
        return torch.bfloat16
    if has_cuda():
        return torch.float16
    return torch.float32


def training_precision(precision: str = "auto") -> dict[str, Any]:
    """TrainingArguments flags for the requested precision ("auto", "bf16", "fp16", "fp32").

    "auto" is bf16 mixed precision on GPUs that support it, fp32 elsewhere. fp16 is opt-in: it
    needs loss scaling and tends to be unstable for preference losses.
    """
    if precision == "auto":
        precision = "bf16" if bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not has_cuda():
        raise ValueError(f"precision {precision!r} needs a CUDA GPU; use 'auto' or 'fp32' on CPU")
    return {
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not has_cuda(),
    }
