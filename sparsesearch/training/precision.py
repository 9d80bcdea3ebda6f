"""Numeric precision of training: fp32, or mixed precision with bf16/fp16 matmuls over fp32 master weights.

Mixed precision here means ``torch.autocast``: parameters, gradients and optimizer state stay fp32 (so masks,
exact zeros and the masked optimizer state are untouched); matmuls run in the low-precision type. ``auto``
picks bf16 where the hardware runs bf16 matmuls fast (a CPU with AVX-512 BF16 or AMX, a CUDA device with
bf16 support) and fp32 elsewhere. fp16 needs CUDA and a gradient scaler (its range is too small for raw
gradients).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..spec import SpecError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def pick_device(name: str) -> torch.device:
    """The device ``train.device`` names: 'auto' is CUDA when visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"train.device: {name!r} requested but no CUDA device is visible")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (AVX-512 BF16 or AMX); Linux flags, else oneDNN's view."""
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
        if flags:
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    mkldnn = getattr(torch.backends, "mkldnn", None)
    return bool(
        mkldnn is not None
        and getattr(mkldnn, "is_available", lambda: False)()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision ``training.precision`` means on ``device``: fp32, bf16 or fp16 (never auto)."""
    if name not in PRECISIONS:
        raise SpecError(f"train.precision: must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise SpecError(f"train.precision: fp16 needs a CUDA device (this run uses {device}); use bf16 or auto")
    return name


@dataclass(frozen=True)
class Precision:
    """How one run computes: the resolved precision on its device, its autocast context and gradient scaler."""

    name: str  # fp32 | bf16 | fp16
    device: torch.device

    @classmethod
    def of(cls, spec_name: str, device: torch.device) -> Precision:
        """The precision ``training.precision`` resolves to on ``device``."""
        return cls(resolve_precision(spec_name, device), device)

    @property
    def dtype(self) -> torch.dtype:
        """The matmul dtype."""
        return _DTYPES[self.name]

    def autocast(self):
        """Context for the forward pass (and the loss); the backward pass follows the forward's dtypes."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A dynamic loss scaler for fp16 (its gradients underflow without one); None otherwise."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)
