"""Render a dataset episode's KVAF video, its overlay on the real frames and its per-frame landmarks to files."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import actwm
from actwm.data.lerobot import LeRobotDataset
from actwm.io import atomic_write_json
from actwm.robots.episode import dataset_robot, episode_camera, episode_pose, parse_spec
from actwm.robots.kinematics import ArmKinematics
from actwm.robots.render import RenderConfig, render_kvaf, scale_intrinsics
from actwm.video import write_mp4


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        "robot": {**asdict(robot), "file_sha256": _sha256(robot.resolved_path())},
        "config": {**asdict(cfg), "render": asdict(rcfg)},
        **used,
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    paths["record"] = out / "kvaf.json"
    atomic_write_json(paths["record"], record)
    return paths
