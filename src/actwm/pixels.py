"""Pixel conventions and the one set of converters between them.

Ground floor: imports nothing from actwm. Three conventions live in the project:

- `uint8` frames `(..., H, W, 3)` (datasets, video files, PNGs, simulators);
- `unit` float frames `(..., 3, H, W)` in [0, 1] (datasets' clips, metrics);
- `signed` float frames `(..., 3, H, W)` in [-1, 1] (codecs, world models, rollouts).

Every conversion between them is one function here; nothing else scales by 255, 127.5 or 2.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def uint8_to_unit(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(..., H, W, 3)` uint8 -> `(..., 3, H, W)` float32 in [0, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {x.dtype}")
    return rearrange(x, "... h w c -> ... c h w").float().div_(255.0)


def uint8_to_signed(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(..., H, W, 3)` uint8 -> `(..., 3, H, W)` float32 in [-1, 1]."""
    return unit_to_signed(uint8_to_unit(frames))


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """`(...)` in [0, 1] -> `(...)` in [-1, 1]."""
    return x * 2 - 1


def signed_to_unit(x: torch.Tensor) -> torch.Tensor:
    """`(...)` in [-1, 1] -> `(...)` in [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """`(..., 3, H, W)` in [0, 1] -> `(..., H, W, 3)` uint8 numpy (rounded, clamped)."""
    y = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return rearrange(y, "... c h w -> ... h w c").numpy()


def signed_to_uint8(x: torch.Tensor) -> np.ndarray:
    """`(..., 3, H, W)` in [-1, 1] -> `(..., H, W, 3)` uint8 numpy (rounded, clamped)."""
    y = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return rearrange(y, "... c h w -> ... h w c").numpy()
