"""KVAF videos for rollouts of a KVAF world model: the user gives actions; the KVAF video of the commanded motion
is rendered here (ee7 actions through the robot's IK from the start state, or joint rows), at the rollout's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actwm.data.lerobot import LeRobotDataset
from actwm.pixels import uint8_to_signed
from actwm.robots.clips import render_ee7_kvaf, render_joints_kvaf
from actwm.robots.episode import dataset_robot, episode_camera
from actwm.robots.kinematics import ArmKinematics
from actwm.robots.render import scale_intrinsics
from actwm.robots.spec import RobotSpec


@dataclass
class ArmStart:
    """The arm and camera at the rollout's start frame.

    Attributes:
        robot: the `actwm.robots` preset.
        joints: `(n,)` arm joints (URDF order) at the start.
        opening: gripper opening in [0, 1] at the start.
        ee_pose: `(6,)` end-effector x, y, z, roll, pitch, yaw at the start (where ee7 deltas integrate from).
        intrinsics: `(3, 3)` K for the rollout's `hw` image; extrinsics: `(4, 4)` world-to-camera.
        hw: (height, width) of the rollout frames.
    """

    robot: RobotSpec
    joints: np.ndarray
    opening: float
    ee_pose: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    hw: tuple[int, int]


def episode_start(store: str, index: int, frame: int, hw: tuple[int, int]) -> ArmStart:
    """`ArmStart` from frame `frame` of a recorded episode (joint states, end-effector pose, calibration)."""
    ds = LeRobotDataset(store)
    spec = dataset_robot(ds)
    arrays = ds.episode_arrays(index)
    names = list(ds.features.get("observation.state", {}).get("names") or [])
    need = (*spec.joint_columns, *spec.gripper_columns, *spec.ee_pose_columns)
    missing = [n for n in need if n not in names]
    if missing:
        raise ValueError(f"{store}: episode {index} has no state columns {missing} (a KVAF rollout needs them)")
    row = np.asarray(arrays["state"][frame], np.float64)
    col = lambda cols: row[[names.index(n) for n in cols]]  # noqa: E731
    cam = episode_camera(ds, index, arrays)
    opening = float(np.clip(spec.gripper_bias + col(spec.gripper_columns) @ np.asarray(spec.gripper_weights), 0, 1))
    k = scale_intrinsics(cam.intrinsics[min(frame, len(cam.intrinsics) - 1)], cam.hw, hw)
    e = cam.extrinsics[min(frame, len(cam.extrinsics) - 1)]
    return ArmStart(spec, col(spec.joint_columns), opening, col(spec.ee_pose_columns), k, e, tuple(hw))


def kvaf_video(raw_actions: torch.Tensor, start: ArmStart, action_space: str = "ee7") -> torch.Tensor:
    """`(b, T, D)` raw commanded actions -> `(b, T, 3, H, W)` KVAF video in [-1, 1].

    `ee7`: per-step end-effector deltas + gripper command (integrated from `start.ee_pose`, joints by IK);
    `joints`: `(b, T, n or n + gripper)` joint rows drawn as they are.
    """
    raw = raw_actions.detach().cpu().numpy().astype(np.float64)
    videos = []
    with ArmKinematics(start.robot) as kin:
        for seq in raw:
            if action_space == "ee7":
                frames = render_ee7_kvaf(
                    kin,
                    start.robot,
                    seq,
                    start.ee_pose,
                    start.joints,
                    start.opening,
                    start.intrinsics,
                    start.extrinsics,
                    start.hw,
                )
            elif action_space == "joints":
                frames = render_joints_kvaf(kin, start.robot, seq, start.intrinsics, start.extrinsics, start.hw)
            else:
                raise ValueError(f"KVAF rollouts render ee7 or joint actions, got action space {action_space!r}")
            videos.append(uint8_to_signed(frames))
    return torch.stack(videos).to(raw_actions.device)
