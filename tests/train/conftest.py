"""Fixtures for the training tests: tiny in-memory clip datasets and a small LeRobot store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from actwm.episode import Episode


class DictDataset(Dataset):
    """Clip dicts like `ClipDataset`'s: video (T, 3, H, W) in [0, 1], actions (T, D), state (T, S)."""

    def __init__(
        self,
        n: int = 6,
        frames: int = 5,
        size: int = 16,
        dim: int = 3,
        state: int = 4,
        seed: int = 0,
        action_space: str | None = None,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.actions = torch.randn(n, frames, dim, generator=g)
        phase = torch.rand(n, 1, 3, 1, 1, generator=g) * 6.28
        shift = self.actions[..., 0].cumsum(1)[:, :, None, None, None]  # frames move with action 0
        self.video = 0.5 + 0.4 * torch.sin((xx + 2 * shift) / 3.0 + yy / 5.0 + phase)
        self.state = torch.randn(n, frames, state, generator=g)
        if action_space is not None:
            self.action_space = action_space

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {
            "video": self.video[i],
            "actions": self.actions[i],
            "state": self.state[i],
            "episode_index": i,
            "start": 0,
        }


@pytest.fixture(autouse=True)
def one_thread():
    """2 threads on the shared 2-core machine run 4-10x slower under load; exact comparisons use 1 thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def dict_dataset():
    return DictDataset


def make_episode(t: int, seed: int, size: int = 16, split: str = "train") -> Episode:
    rng = np.random.default_rng(seed)
    actions = rng.normal(0, 0.2, size=(t, 3)).astype(np.float32)
    actions[-1] = 0
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.stack(
        [
            np.stack([(xx * 9 + 13 * k + 40 * seed) % 256, (yy * 7 + 5 * k) % 256, np.full_like(xx, 60 + 10 * k)], -1)
            for k in range(t)
        ]
    ).astype(np.uint8)
    return Episode(
        frames=frames,
        actions=actions,
        state=rng.normal(size=(t, 2)).astype(np.float32),
        fps=5.0,
        action_space="nav3",
        meta={"scene_id": f"s{seed}", "split": split},
    )


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A 4-episode nav3 LeRobot v3.0 store at 16 px (3 train episodes, 1 test)."""
    from actwm.data.lerobot import LeRobotWriter

    root = tmp_path_factory.mktemp("store") / "nav"
    writer = LeRobotWriter(root, fps=5.0, action_space="nav3", crf=0, pix_fmt="yuv444p")
    for i in range(4):
        writer.add_episode(make_episode(12, seed=i, split="test" if i == 3 else "train"))
    writer.finalize()
    return root
