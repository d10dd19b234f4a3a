"""Closed-loop tasks: seeded episode sets, disjoint scenes, exact discrete execution, oracle success, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actwm.data.convert import TEST_SEED_OFFSET, simulation_seeds
from actwm.geometry import wrap_angle
from actwm.planning.tasks import (
    TASK_SCENE_BASE,
    ImageNavConfig,
    ImageNavTask,
    PushConfig,
    PushOracle,
    PushTask,
    bootstrap_interval,
    check_disjoint,
    integrate_plan,
    oracle_plan,
    wilson_interval,
)
from actwm.sim.nav import NavConfig


@pytest.fixture(scope="module")
def nav_task():
    task = ImageNavTask(ImageNavConfig(size=32))
    yield task
    task.close()


@pytest.fixture(scope="module")
def nav_set(nav_task):
    return nav_task.episodes(seed=3, n=3)


def _index(task, name: str) -> int:
    return task.vocabulary.primitives.index(name)


def test_same_seed_same_episodes_different_seed_different(nav_task, nav_set):
    again = nav_task.episodes(seed=3, n=3)
    assert again.id == nav_set.id and again.spec() == nav_set.spec()
    for a, b in zip(again, nav_set):
        np.testing.assert_array_equal(a.goal_image, b.goal_image)
    other = nav_task.episodes(seed=4, n=3)
    assert other.id != nav_set.id
    assert {e.scene_seed for e in other}.isdisjoint({e.scene_seed for e in nav_set})
    assert nav_task.episodes(seed=3, n=2).id != nav_set.id  # the id covers the whole spec


def test_task_scenes_are_disjoint_from_training_and_held_out_scenes(nav_set):
    # the data pipeline's largest possible training set and a generous held-out set
    used = {s for s, _ in simulation_seeds(TEST_SEED_OFFSET, 100_000, 0)}
    used |= {s for s, _ in simulation_seeds(1000, 100_000, TEST_SEED_OFFSET - 1000)}
    task_seeds = {e.scene_seed for e in nav_set}
    assert task_seeds.isdisjoint(used)
    assert min(task_seeds) >= TASK_SCENE_BASE > max(used)
    with pytest.raises(ValueError, match="overlap"):
        check_disjoint([5])


def test_episode_geometry(nav_task, nav_set):
    for ep in nav_set:
        start, goal = np.asarray(ep.start), np.asarray(ep.goal)
        assert 1.0 - 1e-9 <= ep.shortest_path_m <= 3.0 + 1e-9
        bearing = math.atan2(goal[1] - start[1], goal[0] - start[0])
        assert abs(float(wrap_angle(bearing - start[2]))) <= 3 * math.pi / 8 + 1e-9  # in view within 3 turns
        nav_task.env.reset(seed=ep.scene_seed)
        assert nav_task.env.unwrapped.free_segment(start[:2], goal[:2])
        view = nav_task.env.unwrapped.render_pose(goal)["rgb"]
        np.testing.assert_array_equal(view, ep.goal_image)


def test_oracle_plan_reaches_the_goal_with_spl_one(nav_task, nav_set):
    for ep in nav_set:
        obs = nav_task.reset(ep)
        np.testing.assert_array_equal(obs.goal, ep.goal_image)
        plan = oracle_plan(ep.start, ep.goal)
        for name in plan:
            obs = nav_task.step(_index(nav_task, name))
        obs = nav_task.step(_index(nav_task, "stop"))
        r = nav_task.result(stopped=True)
        assert r["success"] and r["stopped"] and r["distance_to_goal"] < 1e-9
        assert r["actions"] == len(plan) == ep.shortest_actions and obs.step == len(plan) + 1
        assert r["spl"] == pytest.approx(1.0, abs=1e-9) and r["spl_actions"] == 1.0
        assert r["path_length"] == pytest.approx(ep.shortest_path_m, abs=1e-9)
        np.testing.assert_array_equal(obs.rgb, ep.goal_image)


def test_detour_lowers_spl_in_actions_and_no_motion_fails(nav_task, nav_set):
    ep = nav_set[0]
    nav_task.reset(ep)
    plan = ["left", "right"] + oracle_plan(ep.start, ep.goal)
    for name in plan:
        nav_task.step(_index(nav_task, name))
    r = nav_task.result(stopped=False)
    assert r["success"] and r["spl"] == pytest.approx(1.0)
    assert r["spl_actions"] == pytest.approx(ep.shortest_actions / (ep.shortest_actions + 2))
    nav_task.reset(ep)
    r = nav_task.result(stopped=False)
    assert not r["success"] and r["spl"] == 0.0 and r["spl_actions"] == 0.0


@pytest.mark.parametrize("limits", [None, (0.1, 0.15)])
def test_discrete_actions_reach_exactly_the_integrated_poses(nav_set, limits):
    nav = NavConfig() if limits is None else NavConfig(max_translation=limits[0], max_rotation=limits[1])
    task = ImageNavTask(ImageNavConfig(size=32, nav=nav))
    try:
        ep = nav_set[1]
        task.reset(ep)
        plan = ["right", "left"] + oracle_plan(ep.start, ep.goal) + ["left"] * 5  # collision-free
        want = integrate_plan(task.env.unwrapped.pose, plan)
        steps = [len(task.env_actions(_index(task, n))) for n in ("forward", "left", "right", "stop")]
        assert steps == ([1, 1, 1, 1] if limits is None else [3, 3, 3, 1])
        for name, pose in zip(plan, want[1:]):
            task.step(_index(task, name))
            got = task.env.unwrapped.pose
            np.testing.assert_allclose(got[:2], pose[:2], atol=1e-12)
            assert abs(float(wrap_angle(got[2] - pose[2]))) < 1e-12
    finally:
        task.close()


def test_success_region_and_stop_semantics(nav_task, nav_set):
    ep = nav_set[0]
    goal = np.asarray(ep.goal)
    back = np.asarray(ep.start[:2]) - goal[:2]
    back /= np.linalg.norm(back)  # towards the start: along the free segment
    cases = [(0.45, 0.0, True), (0.55, 0.0, False), (0.0, 29.0, True), (0.0, 31.0, False)]
    for offset, angle, ok in cases:
        nav_task.reset(ep)
        pose = np.r_[goal[:2] + offset * back, goal[2] + math.radians(angle)]
        nav_task.env.reset(seed=ep.scene_seed, options={"pose": pose})  # teleport the robot (test only)
        assert nav_task.result(stopped=True)["success"] is ok, (offset, angle)
    obs = nav_task.reset(ep)
    obs = nav_task.step(_index(nav_task, "stop"))
    before = nav_task.env.unwrapped.pose.copy()
    obs = nav_task.step(_index(nav_task, "forward"))  # after stop: counted, does nothing
    assert obs.extras["stopped"] and obs.step == 2
    np.testing.assert_array_equal(nav_task.env.unwrapped.pose, before)
    for bad in (4, -1, [0, 1], 1.5):
        with pytest.raises(ValueError):
            nav_task.step(bad)


def test_summary_intervals():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)  # textbook value
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    results = [
        {"success": i % 2 == 0, "spl": 0.8 * (i % 2 == 0), "spl_actions": 0.5, "path_length": 1.0 + i, "actions": 4}
        for i in range(10)
    ]
    s = ImageNavTask.summary(results)
    assert s["n"] == 10 and s["success_rate"] == 0.5 and s["spl"] == pytest.approx(0.4)
    assert s["success_rate_ci95"] == pytest.approx([0.2366, 0.7634], abs=1e-4)
    assert s["spl_ci95"][0] < 0.4 < s["spl_ci95"][1] and s["spl_actions_ci95"] == [0.5, 0.5]
    assert bootstrap_interval([1.0, 2.0, 3.0]) == bootstrap_interval([1.0, 2.0, 3.0])


def test_push_episodes_are_seeded_and_the_oracle_pusher_succeeds():
    task = PushTask(PushConfig(size=32))
    try:
        eps = task.episodes(seed=1, n=2)
        assert task.episodes(seed=1, n=2).id == eps.id and task.episodes(seed=2, n=2).id != eps.id
        assert min(e.scene_seed for e in eps) >= TASK_SCENE_BASE
        for ep in eps:
            obs = task.reset(ep)
            assert obs.goal.shape == (32, 32, 3) and not np.array_equal(obs.goal, obs.rgb)
            info_target = task.env.unwrapped.target_id
            assert info_target in np.unique(task.env.unwrapped._last_obs["segmentation"])
            assert not task.result(stopped=False)["success"]  # the block starts away from the target
            oracle = PushOracle(task)
            while obs.step < task.budget and task.block_distance() > 0.4 * task.config.tolerance:
                obs = task.step(oracle())
            r = task.result(stopped=True)
            assert r["success"] and r["distance_to_target"] <= task.config.tolerance and r["steps"] == obs.step
        with pytest.raises(ValueError):
            task.step(np.zeros(6))
    finally:
        task.close()
