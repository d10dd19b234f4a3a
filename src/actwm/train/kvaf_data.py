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
from actwm.robots.kinematics import ArmKinematics
from actwm.robots.render import RenderConfig, render_kvaf
from actwm.robots.spec import RobotSpec, robot_spec

NEEDED = ("joints", "intrinsics", "extrinsics")


def render_clip_kvaf(
    kin: ArmKinematics, spec: RobotSpec, joints: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, hw
) -> np.ndarray:
    """`(T, J)` joints (arm joints in URDF order, then the gripper columns), `(T, 3, 3)` K for an `hw` image,
    `(T, 4, 4)` world-to-camera -> `(T, H, W, 3)` uint8 KVAF frames."""
    joints = np.asarray(joints, np.float64)
    n = kin.n_joints
    extra = len(spec.gripper_columns)
    if joints.ndim != 2 or joints.shape[1] not in (n, n + extra):
        raise ValueError(
            f"KVAF rendering: robot {spec.name!r} has {n} arm joints (+ {extra} gripper columns), the clip's joints "
            f"have shape {tuple(joints.shape)}"
        )
    opening = None
    if extra and joints.shape[1] == n + extra:
        opening = np.clip(spec.gripper_bias + joints[:, n:] @ np.asarray(spec.gripper_weights), 0.0, 1.0)
    pose = kin.forward(joints[:, :n], opening)
    cfg = RenderConfig(height=int(hw[0]), width=int(hw[1]))
    frames, _ = render_kvaf(
        [pose], np.asarray(intrinsics, np.float64), np.asarray(extrinsics, np.float64), cfg, grippers=[spec.gripper]
    )
    return frames


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
        frames = render_clip_kvaf(
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
