"""`torch.compile` of a world model's backbone, shared by training (`TrainConfig.compile`) and sampling
(`RolloutConfig.compile`, the planner's `CheckpointWorld(compile=True)`): inductor on CPU or GPU, in place (parameter
names, checkpoints and hooks unchanged), and a plain eager model where CPU inductor has no C++ compiler."""

from __future__ import annotations

import warnings

import torch
from torch import nn


def cpu_compiler_missing() -> str | None:
    """Why torch.compile's CPU backend (inductor) cannot build its C++ kernels here, or None when it can."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except (exc.InvalidCxxCompiler, OSError, RuntimeError) as error:
        return f"no C++ compiler for torch.compile's CPU backend ({type(error).__name__}; set CXX)"
    return None


def compile_in_place(backbone: nn.Module, setting: str, device: torch.device | None = None) -> bool:
    """`backbone.compile()` once (a compiled module stays compiled for every later call); on a CPU without a C++
    compiler, warn naming `setting` (e.g. "RolloutConfig.compile: sampling") and leave it eager. Returns whether it is
    compiled. `device`: where it will run (default: where its parameters are)."""
    if getattr(backbone, "_compiled_call_impl", None) is not None:
        return True
    param = next(backbone.parameters(), None)
    device = device or (param.device if param is not None else torch.device("cpu"))
    missing = cpu_compiler_missing() if device.type == "cpu" else None
    if missing is not None:
        warnings.warn(f"{setting} runs uncompiled: {missing}", stacklevel=3)
        return False
    backbone.compile()
    return True
