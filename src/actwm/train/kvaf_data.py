"""Training clips with their KVAF video: each clip's arm rendered from its recorded joints, intrinsics and
extrinsics (`actwm.robots`), at the clip's own size, aligned frame by frame with its video.

The item gains `kvaf` `(T, 3, H, W)` float in [0, 1] (like `video`); `actwm.batch.Batch.from_collated` maps it to
[-1, 1] as `Batch.kvaf`. Rendering happens here (the data/train layer): models never import robots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from actwm.pixels import uint8_to_unit
from actwm.robots.clips import render_joints_kvaf
from actwm.robots.kinematics import ArmKinematics
from actwm.robots.spec import robot_spec

NEEDED = ("joints", "intrinsics", "extrinsics")


class KvafClips(Dataset):
    """`base`'s items plus `kvaf` (see the module docstring); every other attribute is `base`'s."""

    def __init__(self, base: Dataset, robot: str = "manip") -> None:
        self.base = base
        self.spec = robot_spec(robot)
        self._kin: ArmKinematics | None = None  # one pybullet client per process (DataLoader workers fork)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str) -> Any:
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        missing = [k for k in NEEDED if item.get(k) is None]
        if missing:
            where = getattr(self.base, "root", type(self.base).__name__)
            raise ValueError(
                f"{where}: KVAF conditioning needs the clips' {', '.join(missing)} (joint states and camera "
                f"calibration, as the manip store records); this dataset has none"
            )
        if self._kin is None:
            self._kin = ArmKinematics(self.spec)
        hw = tuple(item["video"].shape[-2:])
        frames = render_joints_kvaf(
            self._kin, self.spec, _np(item["joints"]), _np(item["intrinsics"]), _np(item["extrinsics"]), hw
        )
        return dict(item, kvaf=uint8_to_unit(frames))


def _np(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def with_kvaf(dataset: Dataset, cfg: Any) -> Dataset:
    """`dataset` wrapped in `KvafClips` when `cfg.conditioning` uses the KVAF stream (else as is)."""
    if "kvaf" not in cfg.conditioning.split("+") or isinstance(dataset, KvafClips):
        return dataset
    return KvafClips(dataset, cfg.robot)
