from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actwm.data.convert import convert
from actwm.data.lerobot import LeRobotDataset
from actwm.data.onex import OneXDataset
from actwm.video import write_mp4


def _frames(n: int, offset: int) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32]
    return np.stack(
        [np.stack([(xx * 4 + i) % 256, (yy * 4) % 256, np.full_like(xx, 10 + 8 * (i + offset))], -1) for i in range(n)]
    ).astype(np.uint8)


def make_shard(
    root: Path, shard: int, segments: list[int], video_frames: int | None = None, state_rows: int | None = None
):
    n = len(segments)
    frames = _frames(n, 10 * shard)
    states = np.random.default_rng(shard).normal(size=(n, 25)).astype(np.float32)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "robot_states").mkdir(exist_ok=True)
    (root / "segment_indices").mkdir(exist_ok=True)
    (root / "metadata").mkdir(exist_ok=True)
    write_mp4(root / "videos" / f"video_{shard}.mp4", frames[: video_frames or n], fps=30)
    states[: state_rows or n].tofile(root / "robot_states" / f"states_{shard}.bin")
    np.asarray(segments, np.int32).tofile(root / "segment_indices" / f"segment_idx_{shard}.bin")
    (root / "metadata" / f"metadata_{shard}.json").write_text(json.dumps({"shard_num_frames": n, "query": "test"}))
    return frames, states


def test_onex_segments_states_actions(tmp_path):
    f0, s0 = make_shard(tmp_path, 0, [5, 5, 5, 5, 7, 7, 7, 9, 9, 9, 9, 9])
    f1, s1 = make_shard(tmp_path, 1, [2, 2, 2, 2, 2, 3, 3, 3])
    ds = OneXDataset(tmp_path)
    assert ds.fps == pytest.approx(30.0)
    assert [(s.shard, s.segment_id, s.start, s.stop) for s in ds.segments] == [
        ("0", 5, 0, 4),
        ("0", 7, 4, 7),
        ("0", 9, 7, 12),
        ("1", 2, 0, 5),
        ("1", 3, 5, 8),
    ]
    streamed = list(ds)
    assert [len(e) for e in streamed] == [4, 3, 5, 5, 3]
    for k, seg in enumerate(ds.segments):
        frames, states = (f0, s0) if seg.shard == "0" else (f1, s1)
        ep = streamed[k]
        np.testing.assert_array_equal(ep.state, states[seg.start : seg.stop])
        np.testing.assert_array_equal(ep.actions[:-1], states[seg.start + 1 : seg.stop])  # action t = state t+1
        np.testing.assert_array_equal(ep.actions[-1], 0)
        # frames come from the right place of the shard (blue channel encodes the frame position)
        np.testing.assert_allclose(
            ep.frames[..., 2].mean((1, 2)), frames[seg.start : seg.stop, ..., 2].mean((1, 2)), atol=3.5
        )
        np.testing.assert_array_equal(ds.episode(k).frames, ep.frames)
        assert ep.action_space == "humanoid25" and ep.meta["segment_id"] == seg.segment_id
    out = convert("1x", tmp_path, tmp_path / "lr", split="train", progress=False)
    lr = LeRobotDataset(out)
    assert len(lr) == 5 and lr.action_space == "humanoid25" and lr.splits() == ["train"] * 5
    np.testing.assert_array_equal(lr.episode(2).actions, streamed[2].actions)


def test_onex_short_video_and_bad_states(tmp_path):
    make_shard(tmp_path / "a", 0, [1] * 6 + [2] * 6, video_frames=9)
    with pytest.raises(ValueError, match=r"video_0.mp4: video has 9 frames but metadata says shard_num_frames=12"):
        list(OneXDataset(tmp_path / "a"))
    make_shard(tmp_path / "b", 0, [1] * 6, state_rows=5)
    with pytest.raises(ValueError, match=r"states_0.bin: holds 500 bytes, expected 600"):
        OneXDataset(tmp_path / "b")


def test_onex_shard_files_stay_inside_the_folder(tmp_path):
    make_shard(tmp_path / "outside", 0, [1] * 4)
    make_shard(tmp_path / "onex", 0, [1] * 4)
    assert len(OneXDataset(tmp_path / "onex")) == 1
    states = tmp_path / "onex" / "robot_states" / "states_0.bin"
    states.unlink()
    states.symlink_to(tmp_path / "outside" / "robot_states" / "states_0.bin")  # leads out of the dataset
    with pytest.raises(ValueError, match=r"states_0.bin: path 'robot_states/states_0.bin' leads outside"):
        OneXDataset(tmp_path / "onex")


def test_onex_in_a_hugging_face_cache_snapshot_is_read(tmp_path):
    # huggingface_hub's cache: snapshots/<rev>/<file> are links into the repository's blobs/; that is allowed,
    # a link out of the repository's cache folder is not
    repo = tmp_path / "datasets--1x--worldmodel"
    make_shard(repo / "blobs" / "staging", 0, [1] * 4)
    snap = repo / "snapshots" / "abc123"
    for f in (repo / "blobs" / "staging").rglob("*.*"):
        link = snap / f.relative_to(repo / "blobs" / "staging")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f)
    assert len(OneXDataset(snap)) == 1
    make_shard(tmp_path / "outside", 0, [1] * 4)
    states = snap / "robot_states" / "states_0.bin"
    states.unlink()
    states.symlink_to(tmp_path / "outside" / "robot_states" / "states_0.bin")
    with pytest.raises(ValueError, match="leads outside"):
        OneXDataset(snap)
