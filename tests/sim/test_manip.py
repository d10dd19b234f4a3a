"""The `manip` world: API, determinism, camera geometry, IK control and physical pushing."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from actwm.geometry import backproject_depth, project_points
from actwm.sim import make


@pytest.fixture
def env():
    e = make("manip", size=48)
    yield e
    e.close()


def _drive(env, obs, target, gripper, steps):
    """Move the end-effector towards `target` with small deltas; return the last obs and whether it touched."""
    touched = False
    for _ in range(steps):
        d = np.clip(target - obs["state"][9:12], -0.04, 0.04)
        obs, _, _, _, info = env.step(np.r_[d, 0.0, 0.0, 0.0, gripper].astype(np.float32))
        touched |= info["contact"]
    return obs, touched


def test_obs_shapes_dtypes_and_info(env):
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs["rgb"].shape == (48, 48, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].dtype == np.float32 and obs["segmentation"].dtype == np.int32
    assert obs["state"].shape == (15,) and obs["objects"].shape == (4, 7)
    assert env.action_space.shape == (7,) and env.unwrapped.action_space_name == "ee7"
    assert info["fps"] == 10.0 and info["scene_id"] == 1
    u = env.unwrapped
    assert info["static_ids"] == [u.table, *u.blocks]
    seen = set(np.unique(obs["segmentation"]).tolist())
    assert u.robot in seen and u.table in seen and sum(b in seen for b in u.blocks) >= 3
    # the end-effector starts at home, pointing down
    np.testing.assert_allclose(obs["state"][9:12], u.config.home, atol=5e-3)


def test_same_seed_same_frames_different_seed_different_scene():
    a, b = make("manip", size=32), make("manip", size=32)
    try:
        action = np.array([0.03, -0.02, -0.03, 0.0, 0.0, 0.05, 1.0], np.float32)
        oa, _ = a.reset(seed=5)
        ob, _ = b.reset(seed=5)
        for _ in range(3):
            oa, ob = a.step(action)[0], b.step(action)[0]
        for k in ("rgb", "depth", "segmentation", "state", "objects"):
            np.testing.assert_array_equal(oa[k], ob[k])
        o1, _ = a.reset(seed=6)
        o2, _ = a.reset(seed=7)
        assert np.abs(o1["objects"][:, :2] - o2["objects"][:, :2]).max() > 0.02
        assert not np.array_equal(o1["rgb"], o2["rgb"])
    finally:
        a.close()
        b.close()


def test_projection_and_depth_consistency(env):
    obs, _ = env.reset(seed=2)
    u = env.unwrapped
    k, e = obs["intrinsics"], obs["extrinsics"]
    seg = obs["segmentation"]
    uv, z = project_points(obs["objects"][:, :3], k, e)
    checked = 0
    for (cu, cv), bid in zip(uv, u.blocks):
        i, j = int(round(cv)), int(round(cu))
        assert 0 <= i < 48 and 0 <= j < 48
        if seg[i, j] == u.robot:  # hidden behind the arm
            continue
        assert seg[i, j] == bid
        checked += 1
    assert checked >= 2
    cam = backproject_depth(obs["depth"], k)
    world = (cam - e[:3, 3].astype(np.float64)) @ e[:3, :3].astype(np.float64)
    table = world[seg == u.table]
    assert len(table) > 100
    # table: box x in [0.2, 1.04], y in [-0.6, 0.6], z in [-0.7, 0]; mostly its top face is seen
    lo, hi = np.array([0.2, -0.6, -0.7]) - 5e-3, np.array([1.04, 0.6, 0.0]) + 5e-3
    assert np.all((table >= lo) & (table <= hi))
    assert np.mean(np.abs(table[:, 2]) < 3e-3) > 0.8
    for pose, bid, half in zip(obs["objects"].astype(np.float64), u.blocks, u.block_half):
        pts = world[seg == bid]
        if len(pts):  # in the block frame every visible point lies on the cube's surface
            rot = np.array(p.getMatrixFromQuaternion(pose[3:])).reshape(3, 3)
            local = np.abs((pts - pose[:3]) @ rot)
            assert local.max() < half + 3e-3
            np.testing.assert_allclose(local.max(axis=1), half, atol=3e-3)
    # the camera pose in the extrinsics is the configured one
    eye = -e[:3, :3].T @ e[:3, 3]
    np.testing.assert_allclose(eye, u.config.camera_eye, atol=1e-5)


def test_end_effector_follows_delta_actions(env):
    obs, _ = env.reset(seed=3)
    start = obs["state"][9:12].copy()
    obs, *_ = env.step(np.array([0.03, 0.0, 0.0, 0, 0, 0, 0], np.float32))
    obs, *_ = env.step(np.zeros(7, np.float32))
    np.testing.assert_allclose(obs["state"][9:12] - start, [0.03, 0.0, 0.0], atol=4e-3)
    obs, *_ = env.step(np.array([0.0, 0.0, 0.0, 0, 0, 0.2, 1.0], np.float32))
    obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32))
    yaw_before = np.pi  # home orientation: roll pi, pitch 0, yaw pi
    assert abs((obs["state"][14] - yaw_before + np.pi) % (2 * np.pi) - np.pi - 0.2) < 0.03
    assert obs["state"][7] > -0.2 and obs["state"][8] < 0.2  # fingers closed from +-0.3 towards 0


def test_scripted_push_moves_a_block(env):
    obs, _ = env.reset(seed=0)
    block = obs["objects"][0, :3].astype(np.float64)
    low = env.unwrapped.config.workspace_low[2]
    behind = np.array([block[0] - 0.1, block[1], 0.4])
    obs, _ = _drive(env, obs, behind, 0.0, 12)
    obs, _ = _drive(env, obs, np.r_[behind[:2], low], 1.0, 8)
    obs, touched = _drive(env, obs, np.array([block[0] + 0.08, block[1], low]), 1.0, 12)
    moved = np.linalg.norm(obs["objects"][0, :2] - block[:2])
    assert touched
    assert moved > 0.01, moved
    assert obs["objects"][0, 0] > block[0]  # pushed along +x


def test_bad_actions_raise(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="gripper"):
        env.step(np.array([0, 0, 0, 0, 0, 0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="n_blocks"):
        make("manip", n_blocks=0)
    with pytest.raises(ValueError, match="unknown setting"):
        make("manip", colour="red")
