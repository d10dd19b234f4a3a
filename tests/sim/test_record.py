"""Scripted exploration and episode recording: realised actions, extras, determinism, contact coverage."""

from __future__ import annotations

import numpy as np
import pytest

from actwm.episode import Episode
from actwm.geometry import wrap_angle
from actwm.sim import make, record_episode, record_episodes, scripted_policy


def _nav_deltas(pose: np.ndarray) -> np.ndarray:
    """Independent re-computation: displacement in the robot frame of frame t, wrapped yaw change."""
    out = np.zeros((len(pose), 3))
    for t in range(len(pose) - 1):
        x0, y0, a0 = pose[t].astype(np.float64)
        x1, y1, a1 = pose[t + 1].astype(np.float64)
        rot = np.array([[np.cos(a0), np.sin(a0)], [-np.sin(a0), np.cos(a0)]])
        out[t, :2] = rot @ [x1 - x0, y1 - y0]
        out[t, 2] = (a1 - a0 + np.pi) % (2 * np.pi) - np.pi
    return out


def test_nav_episode_actions_are_realised_pose_deltas():
    ep = record_episode("nav", seed=0, frames=40, size=32)
    assert isinstance(ep, Episode) and len(ep) == 40
    assert ep.frames.shape == (40, 32, 32, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.shape == (40, 3) and ep.actions.dtype == np.float32
    assert ep.state.shape == (40, 6) and ep.fps == 5.0 and ep.action_space == "nav3"
    x = ep.extras
    assert x["depth"].shape == (40, 32, 32) and x["segmentation"].dtype == np.int32
    assert x["intrinsics"].shape == (40, 3, 3) and x["extrinsics"].shape == (40, 4, 4) and x["pose"].shape == (40, 3)
    assert ep.meta["scene_id"] == 0 and ep.meta["env"] == "nav" and ep.meta["size"] == 32
    assert len(ep.meta["static_ids"]) >= 9
    pose = x["pose"]
    assert (np.abs(np.diff(pose[:, 2])) > np.pi).any(), "this episode must cross yaw = +-pi (wrap-around check)"
    np.testing.assert_allclose(ep.actions, _nav_deltas(pose), atol=1e-5)
    np.testing.assert_array_equal(ep.actions[-1], 0.0)
    assert np.abs(ep.actions[:, 2]).max() < 0.35  # wrapped, never ~2 pi
    # the exploration covers forward motion and turning, in both directions
    assert ep.actions[:, 0].sum() > 2.0
    assert (ep.actions[:, 2] > 0.15).any() and (ep.actions[:, 2] < -0.15).any()
    # the recorded rgb is the camera at the recorded pose
    np.testing.assert_allclose(ep.state[:, :3], pose)


def test_nav_blocked_step_records_zero_action():
    ep = record_episode("nav", seed=1, frames=40, size=32)
    pose = ep.extras["pose"]
    blocked = np.all(pose[1:] == pose[:-1], axis=1)
    assert blocked.any() and ep.meta["collisions"] == blocked.sum()
    np.testing.assert_array_equal(ep.actions[:-1][blocked], 0.0)


def test_recording_is_deterministic_and_policy_seed_changes_motion():
    a = record_episode("nav", seed=3, frames=12, size=32, extras=False)
    b = record_episode("nav", seed=3, frames=12, size=32, extras=False)
    c = record_episode("nav", seed=3, frames=12, size=32, policy_seed=99, extras=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.frames[0], c.frames[0])  # same scene and start
    assert not np.array_equal(a.actions, c.actions)
    assert a.extras == {}


def test_manip_episodes_push_blocks_and_record_realised_ee_motion():
    eps = list(record_episodes("manip", seeds=[0, 1, 2], frames=45, size=32, progress=False))
    assert [e.meta["scene_id"] for e in eps] == [0, 1, 2]
    contacts = 0
    for ep in eps:
        assert ep.actions.shape == (45, 7) and ep.state.shape == (45, 15) and ep.fps == 10.0
        assert ep.action_space == "ee7" and ep.extras["objects"].shape == (45, 4, 7)
        ee = ep.state[:, 9:15].astype(np.float64)
        np.testing.assert_allclose(ep.actions[:-1, :3], np.diff(ee[:, :3], axis=0), atol=1e-6)
        np.testing.assert_allclose(ep.actions[:-1, 3:6], wrap_angle(np.diff(ee[:, 3:6], axis=0)), atol=1e-5)
        np.testing.assert_array_equal(ep.actions[-1], 0.0)
        assert set(np.unique(ep.actions[:, 6])) <= {0.0, 1.0}
        blocks = ep.extras["objects"][:, :, :2]
        moved = np.linalg.norm(blocks[-1] - blocks[0], axis=1).max()
        contacts += ep.meta["contact_steps"] > 0 and moved > 0.01
        # smooth: end-effector steps stay small
        assert np.abs(ep.actions[:, :3]).max() < 0.06
    assert contacts >= 2, "the scripted pusher must touch and move blocks in most episodes"


def test_scripted_policy_outputs_valid_actions():
    for name in ("nav", "manip"):
        env = make(name, size=32)
        try:
            obs, _ = env.reset(seed=4)
            policy = scripted_policy(name, np.random.default_rng(0))
            for _ in range(5):
                a = policy(obs)
                assert env.action_space.contains(a)
                obs, *_ = env.step(a)
        finally:
            env.close()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="nav, manip"):
        scripted_policy("car", np.random.default_rng(0))
    with pytest.raises(ValueError, match="frames"):
        record_episode("nav", seed=0, frames=0)
    with pytest.raises(ValueError, match="unknown simulator"):
        record_episode("car", seed=0, frames=3)


def test_policy_kwargs_make_a_slower_robot():
    from actwm.sim import record_episode

    fast = record_episode("nav", seed=5, frames=30, size=32, extras=False)
    slow = record_episode(
        "nav", seed=5, frames=30, size=32, extras=False, policy_kwargs={"speed": 0.05, "turn_rate": 0.08}
    )
    assert np.abs(slow.actions[:, 2]).max() <= 0.08 + 1e-6
    assert np.abs(slow.actions[:, 0]).mean() < np.abs(fast.actions[:, 0]).mean()
    assert slow.meta["policy_kwargs"] == {"speed": 0.05, "turn_rate": 0.08}
