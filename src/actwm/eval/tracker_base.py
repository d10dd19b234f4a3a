"""The mask-tracker interface SCS needs (`MaskTracker`) and the input checks every tracker shares."""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["MaskTracker", "check_track_inputs"]


class MaskTracker(Protocol):
    """What SCS needs from a tracker."""

    name: str

    def track(self, frames: np.ndarray, masks0: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8 and `(N, H, W)` bool -> `(T, N, H, W)` bool."""
        ...


def check_track_inputs(frames: np.ndarray, masks0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the common tracker inputs; returns them as numpy arrays."""
    frames = np.asarray(frames)
    masks0 = np.asarray(masks0)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < 1:
        raise ValueError("frames: the video is empty")
    if masks0.ndim != 3 or masks0.shape[1:] != frames.shape[1:3]:
        raise ValueError(f"masks0 must be (N, H, W) with H, W = {frames.shape[1:3]}, got {masks0.shape}")
    return frames, masks0.astype(bool)
