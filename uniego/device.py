"""Where a job computes: its torch device and its mixed precision. Every stage that runs a
model asks here, so the rules (one GPU per job, this rank's GPU under torchrun, autocast only
on CUDA) live in one place."""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from uniego.config import ComputeSettings
from uniego.errors import UniegoError


def resolve_device(compute: ComputeSettings) -> torch.device:
    """`compute.device` (auto | cuda | cpu) -> the device; under torchrun, this rank's GPU."""
    if compute.device == "cuda" or (compute.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UniegoError("compute.device is cuda but no GPU is visible: set compute.device: cpu, or run "
                              "where CUDA is available", stage="compute")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str):
    """bf16 / fp16 autocast on CUDA (`compute.precision`); a no-op on CPU or with fp32."""
    if device.type != "cuda" or precision == "fp32":
        return nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)
