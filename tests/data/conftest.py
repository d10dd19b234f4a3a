"""Fixture builders for the data tests: small datasets in each real format, written in the test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actwm.episode import Episode


def smooth_frames(t: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8 smooth gradients whose brightness steps by 6 per frame (frame index recoverable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 3)
    out = []
    for k in range(t):
        base = 30 + 6 * k
        chans = [base + 25 * (1 + np.sin(xx / 7 + yy / 11 + phase[c])) for c in range(3)]
        out.append(np.stack(chans, -1))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def make_episode(
    t: int = 12, seed: int = 0, h: int = 32, w: int = 32, split: str | None = None, extras: bool = True
) -> Episode:
    rng = np.random.default_rng(seed)
    actions = rng.normal(size=(t, 3)).astype(np.float32)
    actions[-1] = 0
    ex = {}
    if extras:
        ex = {
            "depth": rng.uniform(0.1, 10, (t, h, w)).astype(np.float32),
            "segmentation": rng.integers(0, 6, (t, h, w)).astype(np.int32),
            "intrinsics": np.tile(np.array([[40.0, 0, 16], [0, 40, 16], [0, 0, 1]]), (t, 1, 1)).astype(np.float32),
            "extrinsics": np.tile(np.eye(4), (t, 1, 1)).astype(np.float32) + seed,
            "pose": rng.normal(size=(t, 3)).astype(np.float32),
        }
    meta = {"scene_id": f"scene{seed}", "seed": seed}
    if split:
        meta["split"] = split
    return Episode(
        frames=smooth_frames(t, h, w, seed),
        actions=actions,
        state=rng.normal(size=(t, 4)).astype(np.float32),
        fps=5.0,
        action_space="nav3",
        extras=ex,
        meta=meta,
    )


@pytest.fixture
def episodes() -> list[Episode]:
    return [make_episode(10 + i, seed=i, split="test" if i == 3 else "train") for i in range(5)]


@pytest.fixture
def make_ep():
    """The `make_episode` builder."""
    return make_episode


@pytest.fixture
def smooth():
    """The `smooth_frames` builder."""
    return smooth_frames


def _traj_frames(t: int, k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32]
    return np.stack(
        [
            np.stack([(xx * 3 + 20 * i + k * 7) % 256, (yy * 3) % 256, np.full_like(xx, 40 + 20 * i)], -1)
            for i in range(t)
        ]
    ).astype(np.uint8)


def build_gnm(
    root: Path, name: str = "recon", n: int = 4, t: int = 6, test: tuple[int, ...] = (3,)
) -> tuple[Path, dict]:
    ds = root / "data" / name
    truth = {}
    rng = np.random.default_rng(0)
    for k in range(n):
        folder = ds / f"traj_{k:02d}"
        folder.mkdir(parents=True)
        frames = _traj_frames(t, k)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(folder / f"{i}.jpg", quality=95)
        pos = np.cumsum(rng.normal(size=(t, 2)), 0)
        yaw = rng.uniform(-np.pi, np.pi, t)
        with open(folder / "traj_data.pkl", "wb") as fh:
            pickle.dump({"position": pos, "yaw": yaw}, fh)
        truth[f"traj_{k:02d}"] = (frames, pos, yaw)
    sp = root / "data_splits" / name
    for split, ks in (("train", [k for k in range(n) if k not in test]), ("test", list(test))):
        (sp / split).mkdir(parents=True)
        (sp / split / "traj_names.txt").write_text("".join(f"traj_{k:02d}\n" for k in ks))
    return ds, truth


@pytest.fixture
def make_gnm():
    """`build_gnm(root, name, n, t, test)` -> (dataset folder, {traj: (frames, position, yaw)})."""
    return build_gnm
