"""A dataset episode -> the arm poses and cameras KVAF rendering needs (from joint states or commanded ee7).

Reads the parquet columns only (read-only): `observation.state` (joint / gripper / end-effector columns named
by the robot preset) and per-frame `observation.camera.intrinsics` / `extrinsics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from actwm.data.lerobot import LeRobotDataset
from actwm.robots.clips import ee7_joints
from actwm.robots.kinematics import ArmKinematics, ArmPose
from actwm.robots.spec import ROBOTS, RobotSpec

SOURCES = ("state", "actions")


@dataclass
class EpisodeCamera:
    """Per-frame calibration of the dataset's video: `intrinsics` (T, 3, 3), `extrinsics` (T, 4, 4), `hw`."""

    intrinsics: np.ndarray
    extrinsics: np.ndarray
    hw: tuple[int, int]


def parse_spec(spec: str) -> tuple[str, int]:
    """`DATASET:EPISODE` -> (dataset root, episode index); ValueError otherwise."""
    root, _, index = spec.rpartition(":")
    if not root or not index.isdigit():
        raise ValueError(f"expected DATASET:EPISODE (e.g. data/manip:0), got {spec!r}")
    return root, int(index)


def dataset_robot(ds: LeRobotDataset, name: str | None = None) -> RobotSpec:
    """The robot preset for `ds`: `name`, else the simulated world recorded in info.json (`actwm.world`)."""
    world = name or ds.info.get("actwm", {}).get("world")
    if world is None or world not in ROBOTS:
        raise ValueError(
            f"{ds.root}: cannot tell which robot recorded it (info.json actwm.world = {world!r}); "
            f"pass --robot (presets: {', '.join(sorted(ROBOTS))})"
        )
    return ROBOTS[world]


def _columns(ds: LeRobotDataset, i: int, state: np.ndarray) -> dict[str, np.ndarray]:
    names = ds.features.get("observation.state", {}).get("names") or ds.episode_meta(i).get("state_names") or []
    if len(names) != state.shape[1]:
        return {}
    return {n: state[:, k].astype(np.float64) for k, n in enumerate(names)}


def _need(cols: dict[str, np.ndarray], names: tuple[str, ...], what: str, where: str) -> np.ndarray:
    missing = [n for n in names if n not in cols]
    if missing or not names:
        raise ValueError(f"{where}: no {what}: observation.state lacks {', '.join(missing or ['its column names'])}")
    return np.stack([cols[n] for n in names], -1)


def episode_camera(ds: LeRobotDataset, i: int, arrays: dict[str, np.ndarray] | None = None) -> EpisodeCamera:
    """Recorded calibration of episode i; ValueError naming the missing feature."""
    arrays = ds.episode_arrays(i) if arrays is None else arrays
    missing = [f"observation.camera.{k}" for k in ("intrinsics", "extrinsics") if k not in arrays]
    if missing:
        raise ValueError(f"{ds.root}: episode {i} has no camera calibration: {' and '.join(missing)} missing")
    h, w = ds.features[ds.video_key]["shape"][:2]
    k = np.asarray(arrays["intrinsics"], dtype=np.float64).reshape(-1, 3, 3)
    e = np.asarray(arrays["extrinsics"], dtype=np.float64).reshape(-1, 4, 4)
    return EpisodeCamera(k, e, (int(h), int(w)))


def episode_pose(
    ds: LeRobotDataset, i: int, robot: RobotSpec, kin: ArmKinematics, source: str = "state"
) -> tuple[ArmPose, dict[str, Any]]:
    """Arm poses of episode i from its recorded joint states, or from its ee7 actions through the robot's IK.

    Returns the pose and a small record of what was used (for provenance).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    where = f"{ds.root}: episode {i}"
    arrays = ds.episode_arrays(i)
    cols = _columns(ds, i, arrays["state"])
    q = _need(cols, robot.joint_columns, "joint states", where)
    opening = None
    if robot.gripper_columns:
        g = _need(cols, robot.gripper_columns, "gripper state", where)
        opening = np.clip(robot.gripper_bias + g @ np.asarray(robot.gripper_weights), 0.0, 1.0)
    if source == "actions":
        q, opening = _replay_ee7(ds, arrays, cols, robot, kin, q[0], opening, where)
    return kin.forward(q, opening), {"source": source, "joint_columns": list(robot.joint_columns)}


def _replay_ee7(ds, arrays, cols, robot, kin, q0, opening, where):
    """Integrate the ee7 deltas from the first recorded end-effector pose and solve IK frame by frame."""
    if ds.action_space != "ee7":
        raise ValueError(f"{where}: rendering from actions needs ee7 actions, the dataset has {ds.action_space!r}")
    start = _need(cols, robot.ee_pose_columns, "end-effector pose", where)[0]
    return ee7_joints(kin, arrays["action"], start, q0, 1.0 if opening is None else opening[0])
