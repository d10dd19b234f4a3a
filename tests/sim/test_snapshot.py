"""Exact snapshot / restore of both built-in worlds, and `manip`'s reset options."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from actwm.sim import make

NAV_A = np.array([0.2, 0.03, 0.25], np.float32)
NAV_B = np.array([0.1, -0.02, -0.4], np.float32)
# manip: the gripper closes at a low height and pushes +x through the block placed in front of it
MANIP_A = np.array([0.03, 0.0, -0.03, 0.0, 0.0, 0.02, 1.0], np.float32)
MANIP_B = np.array([0.02, 0.03, -0.02, 0.05, 0.0, -0.05, 0.0], np.float32)
MANIP_OPTIONS = {"blocks": [[0.66, 0.0], [0.6, 0.25], [0.8, -0.25], [0.9, 0.2]], "ee": [0.56, 0.0, 0.32]}


def _start(name: str, size: int = 40):
    env = make(name, size=size)
    options = MANIP_OPTIONS if name == "manip" else None
    env.reset(seed=11, options=options)
    return env


def _actions(name: str) -> tuple[np.ndarray, np.ndarray]:
    return (NAV_A, NAV_B) if name == "nav" else (MANIP_A, MANIP_B)


def _run(env, action: np.ndarray, n: int) -> list[tuple[dict, dict]]:
    out = []
    for _ in range(n):
        obs, _, _, _, info = env.step(action)
        out.append((obs, info))
    return out


def _assert_identical(run1, run2) -> None:
    assert len(run1) == len(run2)
    for (o1, i1), (o2, i2) in zip(run1, run2):
        assert o1.keys() == o2.keys()
        for k in o1:
            assert o1[k].dtype == o2[k].dtype, k
            np.testing.assert_array_equal(o1[k], o2[k], err_msg=k)
        assert i1 == i2


@pytest.mark.parametrize("name", ["nav", "manip"])
def test_snapshot_step_restore_step_is_bit_identical(name):
    env = _start(name)
    try:
        a, _ = _actions(name)
        _run(env, a, 2)
        u = env.unwrapped
        snap = u.snapshot()
        before = env.render().copy()
        first = _run(env, a, 4)
        u.restore(snap)
        np.testing.assert_array_equal(env.render(), before)  # render() shows the restored state
        second = _run(env, a, 4)
        _assert_identical(first, second)
        if name == "manip":  # the branch really pushed a block: contacts are part of what must replay
            assert any(info["contact"] for _, info in first)
        assert not np.array_equal(first[0][0]["state"], first[-1][0]["state"])  # the steps moved something
    finally:
        env.close()


@pytest.mark.parametrize("name", ["nav", "manip"])
def test_two_branches_restored_alternately(name):
    env = _start(name)
    try:
        u = env.unwrapped
        a, b = _actions(name)
        _run(env, a, 1)
        root = u.snapshot()
        _run(env, a, 2)
        branch_a = u.snapshot()
        u.restore(root)
        _run(env, b, 2)
        branch_b = u.snapshot()
        outs = {}
        for key, snap in [("a", branch_a), ("b", branch_b), ("a", branch_a), ("b", branch_b), ("root", root)]:
            u.restore(snap)
            run = _run(env, a, 2)
            if key in outs:
                _assert_identical(outs[key], run)
            outs[key] = run
        assert not np.array_equal(outs["a"][0][0]["state"], outs["b"][0][0]["state"])
    finally:
        env.close()


@pytest.mark.parametrize("name", ["nav", "manip"])
def test_restore_brings_back_the_env_rng(name):
    env = _start(name, size=16)
    try:
        u = env.unwrapped
        snap = u.snapshot()
        x1 = u.np_random.random(3)
        u.restore(snap)
        np.testing.assert_array_equal(u.np_random.random(3), x1)
    finally:
        env.close()


def test_nav_restore_puts_the_pybullet_world_back():
    env = _start("nav", size=32)
    try:
        u = env.unwrapped
        snap = u.snapshot()
        first = _run(env, NAV_A, 1)
        for body in u.static_ids:  # disturb the pybullet world: every structure and wall jumps away
            p.resetBasePositionAndOrientation(body, [50.0, 50.0, 0.0], [0, 0, 0, 1], physicsClientId=u.client)
        u.restore(snap)
        _assert_identical(first, _run(env, NAV_A, 1))
    finally:
        env.close()


@pytest.mark.parametrize("name", ["nav", "manip"])
def test_restore_rejects_stale_or_foreign_snapshots(name):
    env, other = _start(name, size=16), _start(name, size=16)
    try:
        snap = env.unwrapped.snapshot()
        with pytest.raises(ValueError, match="another env"):
            other.unwrapped.restore(snap)
        with pytest.raises(ValueError, match="snapshot"):
            env.unwrapped.restore({"pose": [0, 0, 0]})
        env.reset(seed=11)
        with pytest.raises(ValueError, match="earlier reset"):
            env.unwrapped.restore(snap)
    finally:
        env.close()
        other.close()


def test_manip_reset_options_place_blocks_end_effector_and_target():
    env = make("manip", size=48)
    try:
        obs_default, _ = env.reset(seed=4)
        halves = list(env.unwrapped.block_half)
        blocks = [[0.7, -0.1, 0.3], [0.6, 0.2, 0.0], [0.85, 0.15, 0.5], [0.55, -0.3, 0.1]]
        obs, info = env.reset(seed=4, options={"blocks": blocks, "ee": [0.7, 0.1, 0.4], "target": [0.8, -0.1, 0.05]})
        assert env.unwrapped.block_half == halves  # the seed's sizes (and colours) are kept
        np.testing.assert_allclose(obs["objects"][:, :2], np.asarray(blocks)[:, :2], atol=2e-3)
        yaw = [p.getEulerFromQuaternion(q)[2] for q in obs["objects"][:, 3:]]
        np.testing.assert_allclose(yaw, np.asarray(blocks)[:, 2], atol=1e-2)
        np.testing.assert_allclose(obs["state"][9:12], [0.7, 0.1, 0.4], atol=5e-3)
        assert info["target_id"] >= 0 and info["target_id"] in np.unique(obs["segmentation"])
        assert info["target_id"] not in np.unique(obs_default["segmentation"])
        for bad, match in [
            ({"nope": 1}, "unknown reset option"),
            ({"blocks": [[0.7, 0.0]]}, "blocks"),
            ({"blocks": [[2.0, 0.0], [0.6, 0.2], [0.85, 0.15], [0.55, -0.3]]}, "on the table"),
            ({"blocks": [[0.7, 0.0], [0.7, 0.01], [0.85, 0.15], [0.55, -0.3]]}, "overlap"),
            ({"ee": [0.0, 0.0, 0.0]}, "workspace"),
            ({"target": [0.7, 0.0, 1.0]}, "target"),
        ]:
            with pytest.raises(ValueError, match=match):
                env.reset(seed=4, options=bad)
    finally:
        env.close()


def test_nav_reset_rejects_unknown_options():
    env = make("nav", size=16)
    try:
        with pytest.raises(ValueError, match="unknown reset option"):
            env.reset(seed=1, options={"goal": [0, 0, 0]})
    finally:
        env.close()


def test_nav_render_pose_equals_the_observation_at_that_pose_and_free_segment_matches_step():
    env = make("nav", size=32)
    try:
        obs, _ = env.reset(seed=2)
        u = env.unwrapped
        pose = obs["pose"].astype(np.float64) + np.array([0.1, -0.05, 0.3])
        view = u.render_pose(pose)
        np.testing.assert_array_equal(u.pose.astype(np.float32), obs["pose"])  # the robot did not move
        moved, _ = env.reset(seed=2, options={"pose": pose})
        for k in ("rgb", "depth", "segmentation"):
            np.testing.assert_array_equal(view[k], moved[k])
        far = pose + np.array([20.0, 0.0, 0.0])  # through a wall: refused by step, not free
        assert not u.free_segment(pose[:2], far[:2]) and u.free_segment(pose[:2], pose[:2])
    finally:
        env.close()
