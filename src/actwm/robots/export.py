"""Render a dataset episode's KVAF video, overlay and landmarks to files; recover actions from a KVAF video."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

import actwm
from actwm.checks import require_at_least, require_choice
from actwm.data.lerobot import LeRobotDataset
from actwm.geometry import wrap_angle
from actwm.io import atomic_write_json, file_sha256
from actwm.robots.episode import SOURCES, dataset_robot, episode_camera, episode_pose, parse_spec
from actwm.robots.kinematics import ArmKinematics
from actwm.robots.recover import RecoveryConfig, recover_kvaf, recovery_errors
from actwm.robots.render import RenderConfig, render_kvaf, scale_intrinsics
from actwm.video import read_video, write_mp4


@dataclass(frozen=True)
class ExportConfig:
    """What `render_episode` writes.

    Attributes:
        size: output rows (width keeps the video's aspect, rounded to even); None: the dataset's video size.
        source: "state" (recorded joints) or "actions" (ee7 commands through IK).
        robot: robot preset (None: from the dataset's info.json); ee_link overrides its end-effector link.
        overlay: also write the KVAF blended over the real frames.
        landmarks_json: where the per-frame pixel coordinates go (None: OUT/landmarks.json).
        render: drawing settings (its height / width are replaced by the output size).
    """

    size: int | None = None
    source: str = "state"
    robot: str | None = None
    ee_link: str | None = None
    overlay: bool = False
    landmarks_json: str | None = None
    render: RenderConfig = RenderConfig()

    def __post_init__(self) -> None:
        require_choice(self, "source", SOURCES)
        require_at_least(self, 8, "size", optional=True)


def output_hw(video_hw: tuple[int, int], size: int | None) -> tuple[int, int]:
    """Output (H, W) for `--size` (even sides, as H.264 needs)."""
    h, w = video_hw
    if size is not None:
        if size < 8:
            raise ValueError(f"--size must be >= 8, got {size}")
        h, w = size, max(2, 2 * round(size * w / h / 2))
    if h % 2 or w % 2:
        raise ValueError(f"KVAF video needs even height and width for H.264, got {h}x{w}; pass --size")
    return h, w


def overlay(real: np.ndarray, kvaf: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """Blend `(T, H, W, 3)` KVAF frames over real frames (resized to match), each pixel by its KVAF brightness."""
    h, w = kvaf.shape[1:3]
    if real.shape[1:3] != (h, w):
        real = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in real])
    a = alpha * kvaf.max(-1, keepdims=True).astype(np.float32) / 255.0
    mixed = (1 - a) * real.astype(np.float32) + a * kvaf.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def render_episode(spec: str, out: str | Path, cfg: ExportConfig) -> dict[str, Path]:
    """`DATASET:EPISODE` -> OUT/kvaf.mp4 (+ OUT/overlay.mp4), landmarks JSON and OUT/kvaf.json (provenance).

    Everything is computed before the first file is written (bad input leaves no output); each write is atomic.
    """
    # 1. read the episode's calibration and arm state
    root, index = parse_spec(spec)
    ds = LeRobotDataset(root)
    robot = dataset_robot(ds, cfg.robot).with_ee_link(cfg.ee_link)
    cam = episode_camera(ds, index)
    h, w = output_hw(cam.hw, cfg.size)
    with ArmKinematics(robot) as kin:
        pose, used = episode_pose(ds, index, robot, kin, cfg.source)
        joint_names = list(kin.joint_names)
    # 2. render at the output size
    rcfg = replace(cfg.render, height=h, width=w)
    k = scale_intrinsics(cam.intrinsics, cam.hw, (h, w))
    frames, marks = render_kvaf([pose], k, cam.extrinsics, rcfg, [robot.gripper])
    mixed = overlay(ds.frames(index), frames) if cfg.overlay else None
    # 3. write: videos, landmarks, provenance
    out = Path(out)
    paths = {"kvaf": out / "kvaf.mp4", "landmarks": Path(cfg.landmarks_json or out / "landmarks.json")}
    write_mp4(paths["kvaf"], frames, ds.fps)
    if mixed is not None:
        paths["overlay"] = out / "overlay.mp4"
        write_mp4(paths["overlay"], mixed, ds.fps)
    atomic_write_json(paths["landmarks"], {"size": [h, w], "joint_names": joint_names, "frames": marks})
    record: dict[str, Any] = {
        "actwm_version": actwm.__version__,
        "dataset": str(Path(root).resolve()),
        "episode": index,
        "frames": len(frames),
        "robot": {**asdict(robot), "file_sha256": file_sha256(robot.resolved_path())},
        "config": {**asdict(cfg), "render": asdict(rcfg)},
        **used,
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    paths["record"] = out / "kvaf.json"
    atomic_write_json(paths["record"], record)
    return paths


def _rows(x: np.ndarray, ok: np.ndarray) -> list:
    return [row.tolist() if good else None for row, good in zip(np.asarray(x, dtype=np.float64), ok)]


def recover_episode(video: str | Path, spec: str, json_path: str | Path, cfg: ExportConfig) -> dict[str, Any]:
    """Recover end-effector pixel, pose and gripper opening from a KVAF video of episode `spec`'s camera.

    The video must be drawn with the default `RenderConfig` at its own size (as `render_episode` writes it).
    Writes per-frame values (null where a cue was not detected), ee7 actions between consecutive frames where
    both poses were recovered (dx, dy, dz, droll, dpitch, dyaw, gripper; gripper = 1 - opening), detection
    rates and, when the episode has joint states, the errors against them. Returns the JSON record.
    """
    # 1. inputs: frames, the episode's camera scaled to the video, the robot
    frames, _ = read_video(video)
    root, index = parse_spec(spec)
    ds = LeRobotDataset(root)
    robot = dataset_robot(ds, cfg.robot).with_ee_link(cfg.ee_link)
    cam = episode_camera(ds, index)
    if len(frames) != len(cam.intrinsics):
        raise ValueError(f"{video}: has {len(frames)} frames but episode {spec} has {len(cam.intrinsics)}")
    h, w = frames.shape[1:3]
    rcfg = replace(cfg.render, height=h, width=w)
    k = scale_intrinsics(cam.intrinsics, cam.hw, (h, w))
    # 2. recover, and score against the recorded arm where there is one
    rec = recover_kvaf(frames, k, cam.extrinsics, rcfg, robot.gripper)
    with ArmKinematics(robot) as kin:
        truth = episode_pose(ds, index, robot, kin, "state")[0]
    errors = recovery_errors(rec, truth, k, cam.extrinsics)
    # 3. actions between consecutive recovered poses
    a = rec.detected["axes"]
    rpy = np.stack(
        [Rotation.from_matrix(r).as_euler("xyz") if ok else np.full(3, np.nan) for r, ok in zip(rec.ee_rot, a)]
    )
    both = a[1:] & a[:-1]
    d = np.concatenate([np.diff(rec.ee_pos, axis=0), wrap_angle(np.diff(rpy, axis=0)), 1.0 - rec.opening[1:, None]], 1)
    record = {
        "actwm_version": actwm.__version__,
        "video": str(Path(video).resolve()),
        "video_sha256": file_sha256(Path(video)),
        "dataset": str(Path(root).resolve()),
        "episode": index,
        "render": asdict(rcfg),
        "recovery": asdict(RecoveryConfig()),
        "frames": {
            "ee": _rows(rec.ee_uv, rec.detected["heatmap"]),
            "ee_pos": _rows(rec.ee_pos, a),
            "ee_rpy": _rows(rpy, a),
            "opening": [float(o) if ok else None for o, ok in zip(rec.opening, rec.detected["gripper"])],
        },
        "actions": _rows(d, both & rec.detected["gripper"][1:]),
        "errors": errors,
    }
    atomic_write_json(json_path, record)
    return record
