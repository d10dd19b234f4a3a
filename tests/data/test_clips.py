from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from actwm.actions import gather_windows, transform_actions
from actwm.data.clips import ClipDataset
from actwm.data.gnm import nav_actions, to_local_coords
from actwm.data.lerobot import LeRobotWriter
from actwm.episode import Episode
from actwm.geometry import se2_compose, wrap_angle


def _nav_episode(t: int, seed: int, smooth, scene: str, split: str) -> tuple[Episode, np.ndarray]:
    rng = np.random.default_rng(seed)
    yaw = np.cumsum(rng.uniform(-0.6, 0.6, t)) + 3.0  # crosses +-pi
    pos = np.cumsum(np.column_stack([np.cos(yaw), np.sin(yaw)]) * 0.3, 0)
    pose = np.column_stack([pos, yaw]).astype(np.float32)
    ep = Episode(
        frames=smooth(t, seed=seed),
        actions=nav_actions(pos, yaw),
        state=pose.copy(),
        fps=10.0,
        action_space="nav3",
        extras={"pose": pose},
        meta={"scene_id": scene, "split": split},
    )
    return ep, np.column_stack([pos, yaw])


@pytest.fixture
def nav_store(tmp_path, smooth):
    w = LeRobotWriter(
        tmp_path / "nav", fps=10.0, action_space="nav3", frames_per_file=40, info_extra={"metric_spacing": 0.3}
    )
    poses = []
    for i in range(8):
        ep, pose = _nav_episode(20, i, smooth, scene=f"s{i // 2}", split="test" if i >= 6 else "train")
        w.add_episode(ep)
        poses.append(pose)
    w.finalize()
    return tmp_path / "nav", poses


def test_delta_and_target_fps_compose_se2(nav_store):
    root, poses = nav_store
    ds = ClipDataset(root, context=2, horizon=3, normalise="none", split="train")
    assert ds.step == 1 and len(ds) == 6 * (20 - 4)
    item = ds[5]
    e, s = item["episode_index"], item["start"]
    raw = nav_actions(poses[e][:, :2], poses[e][:, 2])
    np.testing.assert_allclose(item["actions"].numpy(), raw[s : s + 5], atol=1e-6)
    np.testing.assert_allclose(item["state"].numpy(), poses[e][s : s + 5], atol=1e-5)

    sub = ClipDataset(root, context=2, horizon=3, target_fps=5.0, normalise="none")
    assert sub.step == 2 and sub.clip_fps == 5.0
    item = sub[7]
    e, s = item["episode_index"], item["start"]
    p = poses[e]
    for k in range(4):  # the subsampled delta equals the true relative motion between frames 2 apart
        a, b = s + 2 * k, s + 2 * k + 2
        expect = np.r_[to_local_coords(p[b : b + 1, :2], p[a, :2], p[a, 2])[0], wrap_angle(p[b, 2] - p[a, 2])]
        np.testing.assert_allclose(item["actions"][k].numpy(), expect, atol=1e-5)
    # hand-computed: forward 1 m while turning left 90 deg, then forward 1 m in the new heading -> (1, 1, pi/2)
    w = np.array([[[[1.0, 0, np.pi / 2], [1.0, 0, 0]]]])
    out = transform_actions(w, np.ones((1, 1, 2), bool), "nav3", "delta")[0, 0]
    np.testing.assert_allclose(out, [1.0, 1.0, np.pi / 2], atol=1e-12)


def test_cumulative_is_pose_relative_to_frame0(nav_store):
    root, poses = nav_store
    ds = ClipDataset(root, context=1, horizon=7, action_mode="cumulative", normalise="none", stride=2)
    for k in (0, 11, len(ds) - 1):
        item = ds[k]
        e, s = item["episode_index"], item["start"]
        p = poses[e][s : s + 15 : 2]
        rel = to_local_coords(p[:, :2], p[0, :2], p[0, 2])
        expect = np.column_stack([rel, wrap_angle(p[:, 2] - p[0, 2])])
        np.testing.assert_allclose(item["actions"].numpy(), expect, atol=1e-5)
        np.testing.assert_array_equal(item["actions"][0].numpy(), 0)


def test_sum_and_absolute_dims():
    rows = np.arange(1, 13, dtype=np.float64).reshape(1, 2, 3, 2)  # (B, n, step, D)
    valid = np.ones((1, 2, 3), bool)
    np.testing.assert_allclose(transform_actions(rows, valid, "custom2", "delta")[0], [[9, 12], [27, 30]])
    ee = np.zeros((1, 2, 2, 7))
    ee[..., 0] = 0.1
    ee[0, 0, :, 6] = [0, 1]
    ee[0, 1, :, 6] = [1, 0]
    d = transform_actions(ee, np.ones((1, 2, 2), bool), "ee7", "delta")[0]
    np.testing.assert_allclose(d[:, 0], [0.2, 0.2])
    np.testing.assert_allclose(d[:, 6], [1, 0])  # gripper: last command, not a sum
    c = transform_actions(ee, np.ones((1, 2, 2), bool), "ee7", "cumulative")[0]
    np.testing.assert_allclose(c[:, 0], [0.0, 0.2])
    w, v = gather_windows(np.ones((5, 1)), np.array([2]), 2, 2)  # the second step runs past the end
    assert v.tolist() == [[[True, True], [True, False]]]
    np.testing.assert_allclose(transform_actions(w, v, "custom1", "delta")[0, :, 0], [2, 1])
    np.testing.assert_allclose(se2_compose(np.array([0, 0, np.pi]), np.array([1, 0, np.pi]))[:2], [-1, 0], atol=1e-12)


def test_normalisation(nav_store):
    root, _ = nav_store
    raw = ClipDataset(root, context=1, horizon=4, normalise="none")
    std = ClipDataset(root, context=1, horizon=4, normalise="std")
    st = std.store.stats["action"]
    np.testing.assert_allclose(
        std[3]["actions"].numpy(), (raw[3]["actions"].numpy() - st["mean"]) / st["std"], rtol=1e-5, atol=1e-6
    )
    nwm = ClipDataset(root, context=1, horizon=4, normalise="nwm_scale")  # our per-step deltas at NWM's scale
    assert nwm.metric_spacing == 0.3
    a, b = raw[3]["actions"].numpy(), nwm[3]["actions"].numpy()
    np.testing.assert_allclose(b[:, :2], a[:, :2] / 0.3 * 2 / np.array([7.5, 8.0]), rtol=1e-5)
    np.testing.assert_allclose(b[:, 2], a[:, 2], rtol=1e-6)
    rawc = ClipDataset(root, context=1, horizon=4, normalise="none", action_mode="cumulative")
    nwmc = ClipDataset(root, context=1, horizon=4, normalise="nwm", action_mode="cumulative")
    expect = (rawc[3]["actions"].numpy()[:, :2] / 0.3 - [-2.5, -4]) / [7.5, 8.0] * 2 - 1
    np.testing.assert_allclose(nwmc[3]["actions"].numpy()[:, :2], expect, rtol=1e-5)
    np.testing.assert_allclose(
        nwmc.denormalise_actions(nwmc[3]["actions"].numpy()), rawc[3]["actions"].numpy(), atol=1e-5
    )
    # cumulative std statistics are computed from the training clips: normalised values are centred
    stdc = ClipDataset(root, context=1, horizon=4, action_mode="cumulative", normalise="std")
    allc = np.concatenate([stdc[k]["actions"].numpy() for k in range(len(stdc))])
    assert np.abs(allc.mean(0)).max() < 0.2 and np.abs(allc.std(0) - 1).max() < 0.2


def test_splits_never_share_episodes_or_scenes(nav_store):
    root, _ = nav_store
    tr = ClipDataset(root, split="train", horizon=2)
    te = ClipDataset(root, split="test", horizon=2)
    assert set(tr.episodes) == set(range(6)) and set(te.episodes) == {6, 7}
    assert {e for e, _ in tr.index}.isdisjoint({e for e, _ in te.index})
    for by in ("episode", "scene"):
        a = ClipDataset(root, split="train", split_by=by, test_fraction=0.4, horizon=2)
        b = ClipDataset(root, split="test", split_by=by, test_fraction=0.4, horizon=2)
        assert set(a.episodes).isdisjoint(b.episodes) and sorted(a.episodes + b.episodes) == list(range(8))
        if by == "scene":
            scenes = lambda d: {d.store.episode_meta(i)["scene_id"] for i in d.episodes}  # noqa: E731
            assert scenes(a).isdisjoint(scenes(b))
        again = ClipDataset(root, split="train", split_by=by, test_fraction=0.4, horizon=2)
        assert again.episodes == a.episodes  # deterministic
    with pytest.raises(ValueError, match="no episodes in split 'val'"):
        ClipDataset(root, split="val")
    with pytest.raises(ValueError, match="does not divide"):
        ClipDataset(root, target_fps=3.0)


def test_video_items_and_dataloader_workers(nav_store, smooth):
    root, _ = nav_store
    ds = ClipDataset(root, context=2, horizon=2, size=16, split=None)
    item = ds[0]
    assert item["video"].shape == (4, 3, 16, 16) and item["video"].dtype == torch.float32
    assert 0.0 <= item["video"].min() and item["video"].max() <= 1.0
    full = ClipDataset(root, context=2, horizon=2, split=None)
    v = full[0]["video"]
    ref = torch.from_numpy(smooth(20, seed=0)[:4]).permute(0, 3, 1, 2).float() / 255
    assert (v - ref).abs().mean() < 3 / 255
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    n = 0
    for batch in loader:
        assert batch["video"].shape[1:] == (4, 3, 16, 16) and batch["actions"].shape[1:] == (4, 3)
        n += len(batch["video"])
    assert n == len(ds)


def test_uncached_items_decode_only_the_clip(nav_store):
    root, _ = nav_store
    cached = ClipDataset(root, context=2, horizon=3, stride=2, split=None)
    nocache = ClipDataset(root, context=2, horizon=3, stride=2, split=None, cache_mb=0)
    for k in (0, 9, len(cached) - 1):
        a, b = cached[k], nocache[k]
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["actions"], b["actions"])
    assert not nocache._cache


def test_items_carry_camera_and_joints_of_a_manip_store(tmp_path):
    from actwm.batch import Batch
    from actwm.sim.scripted import record_episode

    w = LeRobotWriter(tmp_path / "manip", fps=10.0, action_space="ee7", frames_per_file=20)
    eps = [record_episode("manip", seed=s, frames=9, size=32) for s in (0, 1)]
    for ep in eps:
        w.add_episode(ep)
    w.finalize()
    ds = ClipDataset(tmp_path / "manip", context=1, horizon=3, stride=2, split=None, size=16, normalise="none")
    assert ds.joint_columns == list(range(9))  # q0..q6, finger_left, finger_right
    for k in (0, len(ds) - 1):
        item = ds[k]
        ep, idx = eps[item["episode_index"]], item["start"] + np.arange(4) * 2
        assert item["intrinsics"].shape == (4, 3, 3) and item["extrinsics"].shape == (4, 4, 4)
        np.testing.assert_array_equal(item["extrinsics"].numpy(), ep.extras["extrinsics"][idx])
        np.testing.assert_array_equal(item["joints"].numpy(), ep.state[idx, :9])
        k32 = ep.extras["intrinsics"][idx].astype(np.float64)  # 32 px -> 16 px: u -> (u + 0.5) / 2 - 0.5
        np.testing.assert_allclose(item["intrinsics"][:, :2, :2].numpy(), k32[:, :2, :2] / 2, rtol=1e-6)
        np.testing.assert_allclose(item["intrinsics"][:, :2, 2].numpy(), (k32[:, :2, 2] + 0.5) / 2 - 0.5, rtol=1e-6)
    batch = Batch.from_collated(next(iter(DataLoader(ds, batch_size=2))))
    assert batch.intrinsics.shape == (2, 4, 3, 3) and batch.joints.shape == (2, 4, 9)
    full = ClipDataset(tmp_path / "manip", context=1, horizon=3, split=None)  # full size: intrinsics as stored
    np.testing.assert_array_equal(full[0]["intrinsics"].numpy(), eps[0].extras["intrinsics"][:4])


def test_resized_intrinsics_follow_the_resized_image():
    # a blob drawn at the projection of a 3-D point in a 40x56 frame; after resize_square to 24 px its centroid
    # sits where the resized intrinsics project the same point (checks the resize maths against the pixels)
    from actwm.data.clips import resize_intrinsics, resize_square
    from actwm.geometry import project_points

    h, w = 40, 56
    k = np.array([[50.0, 0.0, 27.0], [0.0, 48.0, 21.0], [0.0, 0.0, 1.0]])
    e = np.eye(4)
    point = np.array([[0.31, -0.12, 2.0]])
    u, v = project_points(point, k, e)[0][0]
    yy, xx = np.mgrid[0:h, 0:w]
    img = 255 * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 2.5**2))
    frames = torch.from_numpy(np.repeat(img[None, None], 3, 1).round().astype(np.uint8))
    small = resize_square(frames, 24)[0, 0].double()
    yy, xx = np.mgrid[0:24, 0:24]
    cu, cv = (small * torch.from_numpy(xx)).sum() / small.sum(), (small * torch.from_numpy(yy)).sum() / small.sum()
    pu, pv = project_points(point, resize_intrinsics(k, (h, w), 24), e)[0][0]
    assert abs(cu - pu) < 0.05 and abs(cv - pv) < 0.05, (cu, pu, cv, pv)
