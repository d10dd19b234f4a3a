"""Pose estimation from the agent's own views (`actwm.planning.nav_perception`) and the pose-search base policy,
on real `nav` renders."""

import math

import numpy as np
import pytest

from actwm.geometry import se2_compose, se2_relative, wrap_angle
from actwm.planning.interface import STOP, Observation, get_vocabulary
from actwm.planning.loop import Agent, PlannerConfig
from actwm.planning.nav_perception import (
    CameraRig,
    Panorama,
    estimate_pose,
    floor_mask,
    floor_palette,
    popup_points,
)
from actwm.planning.policy import PoseSearchPolicy
from actwm.planning.scorers import GoalSimilarity, NeverStop
from actwm.planning.tasks import ImageNavConfig, ImageNavEpisode, ImageNavTask
from actwm.planning.tasks.imagenav import integrate_plan, oracle_plan
from actwm.planning.worlds import NoWorld
from tests.planning import test_policy

room = test_policy.room  # the shared `nav` scene fixture (training seed 6, 64 px)


def _scan(u, pose, views=14):
    pano = Panorama(CameraRig(64, u.config))
    for k in range(views):
        pano.add(u.render_pose(se2_compose(pose, np.array([0.0, 0.0, k * math.pi / 8])))["rgb"], k)
    return pano


def test_popup_depth_matches_the_rendered_depth(room):
    u, start = room
    r = u.render_pose(start)
    rig = CameraRig(64, u.config)
    points, on_floor = popup_points(rig, floor_mask(r["rgb"], floor_palette([r["rgb"]])))
    _, depth = rig.project(points.reshape(-1, 3))
    ratio = depth.reshape(64, 64) / r["depth"]
    assert on_floor[-1].mean() > 0.7 and not on_floor[0].any()  # floor at the bottom, walls / sky at the top
    assert abs(np.median(ratio[on_floor]) - 1) < 0.02  # the floor plane from the known camera
    walls = ~on_floor & (r["depth"] < u.config.far - 1)  # not floor, not the sky beyond the walls
    assert walls.mean() > 0.2
    assert abs(np.median(ratio[walls]) - 1) < 0.15  # walls and objects at their floor contact's distance


@pytest.mark.parametrize("motion", [(1.0, 0.5, 2), (1.5, -0.5, -2)])
def test_estimator_recovers_a_known_relative_pose(room, motion):
    u, start = room
    dx, dy, turns = motion
    goal_pose = se2_compose(start, np.array([dx, dy, turns * math.pi / 8]))
    assert u.free_segment(start[:2], goal_pose[:2])
    est = estimate_pose(_scan(u, start), u.render_pose(goal_pose)["rgb"])
    true = se2_relative(start, goal_pose)
    assert np.hypot(*(est.pose[:2] - true[:2])) < 0.25
    assert abs(float(wrap_angle(est.pose[2] - true[2]))) < 1e-6  # the heading, on the 22.5-degree lattice
    assert est.coverage > 0.8


def _episode(task, scene, start, plan):
    u = task.env.unwrapped
    task.env.reset(seed=scene)
    goal = se2_compose(np.asarray(start), np.array(plan))
    image = u.render_pose(goal)["rgb"]
    dist = float(np.hypot(*(goal[:2] - np.asarray(start)[:2])))
    return ImageNavEpisode(0, scene, tuple(start), tuple(float(v) for v in goal), image, dist, 4)


def test_policy_reaches_a_nearby_goal_deterministically(room):
    _, start = room
    task = ImageNavTask(ImageNavConfig(size=64, budget=40))
    try:
        episode = _episode(task, 6, start, (0.75, 0.0, 3 * math.pi / 4))  # 3 forwards, 6 left turns
        agent = Agent(NoWorld(), PoseSearchPolicy(), GoalSimilarity("ncc"), NeverStop(), PlannerConfig(8, 20, 20))
        first, second = (agent.run_episode(task, episode, seed=0) for _ in range(2))
    finally:
        task.close()
    assert first["success"] and first["stopped"]  # the agent's own stop, at the goal
    assert first["executed"] == second["executed"]
    assert first["distance_to_goal"] < 0.3


def test_policy_scans_then_follows_its_estimate_by_odometry(room):
    u, start = room
    policy = PoseSearchPolicy(scan_views=14)
    policy.reset(get_vocabulary("nav_discrete"), np.random.default_rng(0))
    goal = u.render_pose(se2_compose(start, np.array([1.0, 0.0, 0.0])))["rgb"]
    names = get_vocabulary("nav_discrete").primitives
    executed: list[int] = []
    for k in range(13):  # 13 left turns: one view per heading
        view = u.render_pose(se2_compose(start, np.array([0.0, 0.0, k * math.pi / 8])))["rgb"]
        plans = policy.propose(Observation(rgb=view, goal=goal, extras={"actions": tuple(executed)}), 64, 20)
        assert plans.shape == (1, 20) and names[int(plans[0, 0])] == "left"  # the scan is not revised
        executed.append(int(plans[0, 0]))
    view = u.render_pose(se2_compose(start, np.array([0.0, 0.0, 13 * math.pi / 8])))["rgb"]
    plans = policy.propose(Observation(rgb=view, goal=goal, extras={"actions": tuple(executed)}), 64, 20)
    moves = [names[int(a)] for a in plans[0] if names[int(a)] != "stop"]
    assert moves == ["left"] * 3 + ["forward"] * 4  # back to the start heading, 1 m ahead
    assert plans.shape[1] == 20 and len(plans) > 1 and len(policy.estimates) >= 2
    pose = integrate_plan(np.zeros(3), executed)[-1]
    for est in policy.estimates[1:3]:  # the other hypotheses' paths are there for a world model to revise
        path = [names.index(a) for a in oracle_plan(pose, se2_compose(np.zeros(3), est.pose))]
        row = np.array((path + [names.index("stop")] * 20)[:20])
        assert (plans == row).all(axis=1).any()
    assert len(plans) == 64  # `wide`: macros and random plans fill up to M
    policy.wide = False  # only the own plan and the hypotheses' paths
    narrow = policy.propose(Observation(rgb=view, goal=goal, extras={"actions": tuple(executed)}), 64, 20)
    assert 1 < len(narrow) < 64 and (narrow == plans[: len(narrow)]).all()


def test_imagenav_observations_list_the_executed_actions():
    task = ImageNavTask(ImageNavConfig(size=32, budget=6))
    try:
        episode = task.episodes(seed=0, n=1)[0]
        assert task.reset(episode).extras["actions"] == ()
        names = task.vocabulary.primitives
        task.step(names.index("left"))
        obs = task.step(names.index("forward"))
        assert obs.extras["actions"] == (names.index("left"), names.index("forward"))
        obs = task.step(names.index("stop"))
        assert task.step(names.index("left")).extras["actions"] == obs.extras["actions"]  # nothing after stop
        assert obs.extras["actions"][-1] == names.index("stop")
    finally:
        task.close()


def test_policy_follows_a_world_models_choice_of_hypothesis(room):
    u, start = room
    policy = PoseSearchPolicy()
    policy.reset(get_vocabulary("nav_discrete"), np.random.default_rng(0))
    goal = u.render_pose(se2_compose(start, np.array([1.0, 0.0, 0.0])))["rgb"]
    executed: list[int] = []
    for _ in range(14):  # the scan, then the first go-phase proposals
        pose = integrate_plan(np.zeros(3), executed)[-1]
        view = u.render_pose(se2_compose(start, pose))["rgb"]
        plans = policy.propose(Observation(rgb=view, goal=goal, extras={"actions": tuple(executed)}), 64, 20)
        if len(plans) == 1:
            executed.append(int(plans[0, 0]))
            policy.advance(1)
    own = [int(a) for a in plans[0] if int(a) != STOP]
    paths = [oracle_plan_indices(pose, e.pose) for e in policy.estimates[1:3]]
    other = next(p for p in paths if p[:2] != own[:2])  # a world model picks another hypothesis' path ...
    executed += other[:2]  # ... and executes its first two actions
    policy.advance(2)
    pose = integrate_plan(np.zeros(3), executed)[-1]
    view = u.render_pose(se2_compose(start, pose))["rgb"]
    plans = policy.propose(Observation(rgb=view, goal=goal, extras={"actions": tuple(executed)}), 64, 20)
    assert [int(a) for a in plans[0] if int(a) != STOP] == other[2:]  # the policy goes on to that hypothesis


def oracle_plan_indices(pose, target):
    names = get_vocabulary("nav_discrete").primitives
    return [names.index(a) for a in oracle_plan(pose, target)]


@pytest.mark.parametrize("bad", [{"scan_views": 0}, {"scan_views": 17}, {"hypotheses": 0}, {"radius": 0.0}])
def test_pose_search_policy_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="PoseSearchPolicy needs"):
        PoseSearchPolicy(**bad)
