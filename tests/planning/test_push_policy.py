"""Push-to-target without privileged state: the frame reader, the base policy, the oracle agent, the stop."""

import dataclasses

import numpy as np
import pytest

from actwm.planning.loop import Agent, PlannerConfig
from actwm.planning.push_perception import BlockReader, pixel_to_plane
from actwm.planning.push_policy import BlockToTarget, PushPerception, PushPolicy, PushStop
from actwm.planning.tasks import PushConfig, PushTask
from actwm.planning.worlds import OracleWorld


@pytest.fixture(scope="module")
def push64():
    task = PushTask(PushConfig(size=64, budget=60))
    yield task, task.episodes(seed=1, n=2)
    task.close()


def _reader(obs):
    return BlockReader.from_start(obs.rgb, obs.goal, obs.extras["intrinsics"], obs.extras["extrinsics"])


def test_pixel_to_plane_inverts_the_camera_projection(push64):
    from actwm.geometry import project_points

    task, eps = push64
    obs = task.reset(eps[0])
    pts = np.array([[0.6, 0.1, 0.033], [0.75, -0.2, 0.033]])
    uv, _ = project_points(pts, obs.extras["intrinsics"], obs.extras["extrinsics"])
    back = pixel_to_plane(uv, obs.extras["intrinsics"], obs.extras["extrinsics"], 0.033)
    np.testing.assert_allclose(back, pts, atol=1e-6)


def test_reader_locates_block_and_target_on_real_renders(push64):
    task, eps = push64
    for ep in eps:
        obs = task.reset(ep)
        reader = _reader(obs)
        true_block = task.env.unwrapped.block_poses()[0, :2]
        assert np.hypot(*(reader.target - np.asarray(ep.target))) < 0.012
        assert np.hypot(*(reader.locate(obs.rgb) - true_block)) < 0.012
        assert abs(reader.distance(obs.rgb) - task.block_distance()) < 0.015


def test_base_policy_moves_the_block_toward_the_target(push64):
    task, eps = push64
    obs = task.reset(eps[0])
    policy = PushPolicy()
    policy.reset(task.vocabulary, np.random.default_rng(0))
    start = task.block_distance()
    while obs.step < 30:
        for action in policy.propose(obs, 1, 6)[0][:3]:
            obs = task.step(action)
    assert task.block_distance() < start - 0.04  # at least 4 cm closer after 30 actions


def test_plans_stay_in_the_vocabulary_and_row_zero_is_the_preferred_push(push64):
    task, eps = push64
    obs = task.reset(eps[1])
    policy = PushPolicy()
    policy.reset(task.vocabulary, np.random.default_rng(0))
    plans = policy.propose(obs, 12, 5)
    assert plans.shape == (12, 5, 7)
    task.vocabulary.validate(plans)
    assert len({p.tobytes() for p in plans}) == 12  # all candidates differ
    np.testing.assert_array_equal(plans[0], PushPolicy().propose(obs, 1, 5)[0])
    with pytest.raises(ValueError, match="ee7"):
        PushPolicy().reset(__import__("actwm.planning").planning.get_vocabulary("nav_discrete"), None)


def _oracle_agent():
    perception = PushPerception()
    return Agent(
        OracleWorld(),
        PushPolicy(perception=perception),
        BlockToTarget(perception),
        PushStop(perception),
        PlannerConfig(proposals=6, horizon=6, execute=3),
    )


def test_oracle_agent_solves_a_near_target_episode_deterministically():
    task = PushTask(PushConfig(size=64, budget=40, push_range=(0.05, 0.06)))
    try:
        ep = task.episodes(seed=3, n=1)[0]
        runs = []
        for _ in range(2):
            agent = _oracle_agent()
            agent.world.bind(task)
            runs.append(agent.run_episode(task, ep, seed=5))
        for r in runs:
            r.pop("seconds")
        assert runs[0] == runs[1]
        assert runs[0]["success"] and runs[0]["stopped"] and runs[0]["imagined_plans"] > 0
    finally:
        task.close()


def test_stop_fires_on_the_goal_view_and_not_at_the_start(push64):
    task, eps = push64
    obs = task.reset(eps[0])
    stop = PushStop(PushPerception())
    assert not stop(obs, task)
    assert stop(dataclasses.replace(obs, rgb=obs.goal, step=1), task)  # the goal view: block on the target


def test_the_push_agent_shares_one_perception_between_policy_scorer_and_stop():
    from actwm.planning.runner import PlanRunConfig, build_agent

    agent = build_agent(PlanRunConfig(task="push", planner=PlannerConfig(8, 10, 10, base_margin=0.05)), world=None)
    assert isinstance(agent.proposer, PushPolicy) and isinstance(agent.scorer, BlockToTarget)
    assert isinstance(agent.stop, PushStop) and agent.stop.threshold == 0.02  # metres, the calibrated default
    assert agent.scorer.perception is agent.proposer.perception is agent.stop.perception
    assert agent.cfg.base_margin == 0.05
