"""KVAF videos of clips for the world model's data and rollout layers: from joint rows (recorded joint states)
or from commanded ee7 actions (integrated from the start end-effector pose, through the robot's IK).

Pixel sizes follow the clip: intrinsics must be for the `(H, W)` image the KVAF is drawn at.
"""

from __future__ import annotations

import numpy as np

from actwm.robots.kinematics import ArmKinematics
from actwm.robots.render import RenderConfig, render_kvaf
from actwm.robots.spec import RobotSpec


def render_joints_kvaf(
    kin: ArmKinematics,
    spec: RobotSpec,
    joints: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    hw: tuple[int, int],
) -> np.ndarray:
    """`(T, J)` joints (arm joints in URDF order, then optionally the gripper columns), `(T, 3, 3)` or `(3, 3)` K
    for an `hw` image, `(T, 4, 4)` or `(4, 4)` world-to-camera -> `(T, H, W, 3)` uint8 KVAF frames."""
    joints = np.asarray(joints, np.float64)
    n, extra = kin.n_joints, len(spec.gripper_columns)
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
    k, e = np.asarray(intrinsics, np.float64), np.asarray(extrinsics, np.float64)
    frames, _ = render_kvaf([pose], k, e, cfg, grippers=[spec.gripper])
    return frames


def ee7_joints(
    kin: ArmKinematics, actions: np.ndarray, start_pose: np.ndarray, start_joints: np.ndarray, start_opening: float
) -> tuple[np.ndarray, np.ndarray]:
    """Commanded ee7 actions `(T, 7)` (row t moves frame t to t + 1: dx, dy, dz, droll, dpitch, dyaw, gripper with
    0 open / 1 closed) from the start end-effector pose `(6,)` (x, y, z, roll, pitch, yaw) -> arm joints `(T, n)`
    by IK (seeded with `start_joints` `(n,)`) and gripper openings `(T,)` in [0, 1]."""
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or a.shape[1] != 7:
        raise ValueError(f"ee7 actions must be (frames, 7), got shape {tuple(a.shape)}")
    target = np.asarray(start_pose, np.float64)[None] + np.concatenate([np.zeros((1, 6)), np.cumsum(a[:-1, :6], 0)])
    q = kin.inverse(target[:, :3], target[:, 3:], np.asarray(start_joints, np.float64))
    opening = np.concatenate([[float(start_opening)], 1.0 - np.clip(a[:-1, 6], 0.0, 1.0)])
    return q, opening


def render_ee7_kvaf(
    kin: ArmKinematics,
    spec: RobotSpec,
    actions: np.ndarray,
    start_pose: np.ndarray,
    start_joints: np.ndarray,
    start_opening: float,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    hw: tuple[int, int],
) -> np.ndarray:
    """The KVAF video `(T, H, W, 3)` uint8 of commanded ee7 actions (see `ee7_joints`)."""
    q, opening = ee7_joints(kin, actions, start_pose, start_joints, start_opening)
    pose = kin.forward(q, opening)
    cfg = RenderConfig(height=int(hw[0]), width=int(hw[1]))
    k, e = np.asarray(intrinsics, np.float64), np.asarray(extrinsics, np.float64)
    frames, _ = render_kvaf([pose], k, e, cfg, grippers=[spec.gripper])
    return frames
