"""The in-memory episode every simulator and reader produces and every writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Episode:
    """One trajectory.

    Attributes:
        frames: `(T, H, W, 3)` uint8 RGB from the main camera.
        actions: `(T, D)` float32; row t takes frame t to frame t+1 (last row: zeros).
        state: `(T, S)` float32 robot state (may have S = 0).
        fps: frames per second of `frames`.
        action_space: name of the action space (see `actwm.actions`).
        extras: optional per-frame arrays with first axis T: `depth` (T, H, W) float32 metres,
            `segmentation` (T, H, W) int32 object ids, `intrinsics` (T, 3, 3), `extrinsics` (T, 4, 4)
            world-to-camera, `pose` (T, 3) x, y, yaw for navigation, ...
        meta: JSON-serialisable facts about the episode (scene id, seed, source file, task, ...).
    """

    frames: np.ndarray
    actions: np.ndarray
    state: np.ndarray
    fps: float
    action_space: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"episode frames must be uint8 (T, H, W, 3), got {self.frames.dtype} {self.frames.shape}")
        for key, arr in [("actions", self.actions), ("state", self.state), *self.extras.items()]:
            if len(arr) != t:
                raise ValueError(f"episode field {key!r} has {len(arr)} rows but there are {t} frames")
        if self.actions.ndim != 2:
            raise ValueError(f"episode actions must be (T, D), got {self.actions.shape}")

    def __len__(self) -> int:
        return len(self.frames)
