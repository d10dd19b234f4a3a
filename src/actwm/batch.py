"""The typed batch that carries a clip from the dataset to the loss, `generate` and rollouts.

Ground floor: imports nothing from actwm above the ground floor (only `actwm.pixels`).
A dataset item is a dict of tensors (so DataLoader's default
collation works, also across worker processes); `Batch.from_collated` turns the collated dict into this
type once, at the trainer's door. A new input (joint states, camera calibration, a KVAF video) is one more
optional field here and one more key in the dataset item: the trainer, loss and rollouts pass the batch on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from actwm.pixels import unit_to_signed

# dataset-item keys that hold optional per-clip tensors, in field order
OPTIONAL_KEYS = ("state", "intrinsics", "extrinsics", "joints", "kvaf")
# float pixels may overshoot [0, 1] by resampling round-off this much before they count as the wrong range
PIXEL_TOLERANCE = 1e-3


@dataclass
class Batch:
    """One batch of clips.

    Attributes:
        video: `(b, T, 3, H, W)` float pixels in [-1, 1].
        actions: `(b, T, D)` normalised model actions; row t conditions pixel frame t.
        state: `(b, T, S)` robot state per frame, or None.
        intrinsics: `(b, T, 3, 3)` camera intrinsics (OpenCV pixels), or None.
        extrinsics: `(b, T, 4, 4)` world-to-camera, or None.
        joints: `(b, T, J)` joint positions (arm joints then gripper), or None.
        kvaf: `(b, T, 3, H, W)` the clip's KVAF video (EA-WM), float pixels in [-1, 1] like `video`, or None.
        meta: non-tensor facts per sample (episode index, clip start, ...): lists of length b.
    """

    video: torch.Tensor
    actions: torch.Tensor
    state: torch.Tensor | None = None
    intrinsics: torch.Tensor | None = None
    extrinsics: torch.Tensor | None = None
    joints: torch.Tensor | None = None
    kvaf: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.video.ndim != 5 or self.video.shape[2] != 3:
            raise ValueError(f"Batch.video must be (batch, frames, 3, H, W), got {tuple(self.video.shape)}")
        if self.actions.ndim != 3 or self.actions.shape[:2] != self.video.shape[:2]:
            raise ValueError(
                f"Batch.actions must be (batch, frames, D) matching video {tuple(self.video.shape[:2])}, "
                f"got {tuple(self.actions.shape)}"
            )
        for key in OPTIONAL_KEYS:
            value = getattr(self, key)
            if value is not None and tuple(value.shape[:2]) != tuple(self.video.shape[:2]):
                raise ValueError(
                    f"Batch.{key} must start with (batch, frames) = {tuple(self.video.shape[:2])}, "
                    f"got {tuple(value.shape)}"
                )

    @property
    def size(self) -> int:
        return self.video.shape[0]

    @property
    def frames(self) -> int:
        return self.video.shape[1]

    @property
    def initial_state(self) -> torch.Tensor | None:
        """`(b, S)` the state at frame 0 (what the state embedding conditions on), or None."""
        return None if self.state is None else self.state[:, 0]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Batch":
        """A copy with every tensor on `device` as `dtype`."""
        moved = {
            f.name: getattr(self, f.name).to(device, dtype)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    @classmethod
    def from_collated(cls, item: dict[str, Any]) -> "Batch":
        """From a collated dataset dict: `video` `(b, T, 3, H, W)` in [0, 1], `actions`, optional tensors
        under `OPTIONAL_KEYS`; every other key goes to `meta`."""
        for key in ("video", "actions"):
            if key not in item:
                raise ValueError(f"dataset items must hold {key!r}; got keys {sorted(item)}")
        video = item["video"]
        if not isinstance(video, torch.Tensor) or not isinstance(item["actions"], torch.Tensor):
            raise ValueError("dataset items' 'video' and 'actions' must be tensors")
        if not video.is_floating_point():
            raise ValueError(f"dataset item 'video' must be float pixels in [0, 1], got dtype {video.dtype}")
        if video.numel():
            lo, hi = torch.aminmax(video)
            if float(lo) < -PIXEL_TOLERANCE or float(hi) > 1 + PIXEL_TOLERANCE:
                raise ValueError("dataset item 'video' must hold pixels in [0, 1] (the batch maps them to [-1, 1])")
        optional = {k: item[k] for k in OPTIONAL_KEYS if item.get(k) is not None}
        if "kvaf" in optional:  # pixels in [0, 1] like the video
            optional["kvaf"] = unit_to_signed(optional["kvaf"].float())
        meta = {k: v for k, v in item.items() if k not in ("video", "actions", *OPTIONAL_KEYS)}
        return cls(video=unit_to_signed(video.float()), actions=item["actions"].float(), meta=meta, **optional)
