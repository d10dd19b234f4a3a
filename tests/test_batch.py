"""The typed Batch at the trainer's door: collated dataset dicts in, checked [-1, 1] clips out."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from actwm.batch import Batch
from actwm.pixels import uint8_to_signed


def _item(t: int = 5, size: int = 8, dim: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (t, size, size, 3), generator=g, dtype=torch.uint8)
    return {
        "video": frames.permute(0, 3, 1, 2).float() / 255,  # (T, 3, H, W) in [0, 1], as ClipDataset gives
        "actions": torch.randn(t, dim, generator=g),
        "state": torch.randn(t, 2, generator=g),
        "episode_index": seed,
        "start": 3,
        "_frames": frames,
    }


def test_from_collated_types_the_clip():
    items = [_item(seed=s) for s in range(2)]
    frames = torch.stack([it.pop("_frames") for it in items])
    batch = Batch.from_collated(default_collate(items))
    # pixels: the same values as the one converter from the stored uint8 frames
    assert torch.allclose(batch.video, uint8_to_signed(frames), atol=1e-6)
    assert batch.video.min() >= -1 and batch.video.max() <= 1
    assert torch.equal(batch.actions, torch.stack([it["actions"] for it in items]))
    assert torch.equal(batch.initial_state, torch.stack([it["state"][0] for it in items]))
    assert batch.meta["episode_index"].tolist() == [0, 1] and (batch.size, batch.frames) == (2, 5)
    moved = batch.to("cpu", torch.float64)
    assert moved.video.dtype == torch.float64 and moved.state.dtype == torch.float64
    assert torch.equal(moved.video.float(), batch.video) and moved.meta is batch.meta


def test_from_collated_refuses_wrong_items():
    good = _item()
    good.pop("_frames")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Batch.from_collated(default_collate([{**good, "video": good["video"] * 2 - 1}]))
    with pytest.raises(ValueError, match="float pixels"):
        Batch.from_collated(default_collate([{**good, "video": (good["video"] * 255).to(torch.uint8)}]))
    with pytest.raises(ValueError, match="'actions'"):
        Batch.from_collated(default_collate([{"video": good["video"]}]))
    with pytest.raises(ValueError, match="Batch.actions"):
        Batch.from_collated(default_collate([{**good, "actions": good["actions"][:4]}]))
    with pytest.raises(ValueError, match="Batch.state"):
        Batch.from_collated(default_collate([{**good, "state": good["state"][:3]}]))
    with pytest.raises(ValueError, match="Batch.video"):
        Batch.from_collated(default_collate([{**good, "video": good["video"][:, :2]}]))
    # resampling round-off just outside [0, 1] is pixels, not the wrong convention
    Batch.from_collated(default_collate([{**good, "video": good["video"].clamp(0, 1) * (1 + 1e-5)}]))
