"""The base policies: the per-task registry behind `--proposer base`, and the ImageNav policy on real renders."""

import math

import numpy as np
import pytest
import torch

from actwm import sim
from actwm.geometry import se2_compose
from actwm.pixels import uint8_to_unit
from actwm.planning import policy
from actwm.planning.interface import STOP, Observation, get_vocabulary
from actwm.planning.policy import PoseSearchPolicy, TemplateMatchPolicy, base_policy, register_base_policy
from actwm.planning.runner import PlanRunConfig, build_proposer
from actwm.planning.scorers import GoalSimilarity


class _PushPolicy(TemplateMatchPolicy):
    name = "push-base"


def test_base_proposer_is_the_tasks_registered_policy(monkeypatch):
    monkeypatch.setitem(policy.BASE_POLICIES, "push", _PushPolicy)
    assert type(build_proposer(PlanRunConfig(task="push"))) is _PushPolicy
    assert type(build_proposer(PlanRunConfig(task="imagenav"))) is PoseSearchPolicy
    monkeypatch.delitem(policy.BASE_POLICIES, "push")
    assert type(base_policy("push")) is PoseSearchPolicy  # fallback: refuses non-nav vocabularies at reset


def test_register_base_policy_refuses_a_non_callable():
    with pytest.raises(ValueError, match="callable factory"):
        register_base_policy("push", None)


# -- the ImageNav base policy on real `nav` renders ----------------------------------------------------------


@pytest.fixture(scope="module")
def room():
    """A `nav` scene at 64 px and a free start pose (the simulator's own)."""
    env = sim.make("nav", size=64)
    obs, _ = env.reset(seed=6)
    yield env.unwrapped, obs["pose"].astype(np.float64)
    env.close()


def _policy():
    policy = TemplateMatchPolicy()
    policy.reset(get_vocabulary("nav_discrete"), np.random.default_rng(0))
    return policy


def _first_moves(plan):
    names = get_vocabulary("nav_discrete").primitives
    return [names[int(a)] for a in plan if int(a) != STOP]


@pytest.mark.parametrize("side, turn", [("left", 1), ("right", -1)])
def test_policy_turns_toward_a_goal_to_its_side(room, side, turn):
    u, start = room
    goal = u.render_pose(se2_compose(start, np.array([0.0, 0.0, turn * math.pi / 8])))["rgb"]
    obs = Observation(rgb=u.render_pose(start)["rgb"], goal=goal)
    assert _first_moves(_policy().preferred(obs, 10)) == [side]


def test_policy_holds_at_the_goal(room):
    u, start = room
    view = u.render_pose(start)["rgb"]
    plan = _policy().preferred(Observation(rgb=view, goal=view), 10)
    assert int(plan[0]) == STOP  # row 0 starting with stop: the agent's own decision to stop


def test_policy_scan_returns_to_the_best_matching_heading(room):
    u, start = room
    views = [u.render_pose(se2_compose(start, np.array([0.0, 0.0, k * math.pi / 8])))["rgb"] for k in range(16)]
    policy = _policy()
    policy.min_score = 2.0  # the goal never counts as in view: a full scan, remembering each heading's match
    goal = views[5]
    for k in range(16):
        assert _first_moves(policy.preferred(Observation(rgb=views[k], goal=goal), 10)) == ["left"]
    plan = policy.preferred(Observation(rgb=views[0], goal=goal), 10)  # back at heading 0 after 16 left turns
    assert _first_moves(plan) == ["left"] * 5 + ["forward"] * 2


def test_last_frame_scorer_scores_only_the_closing_frames():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.random((3, 4, 3, 16, 16), dtype=np.float32))
    goal = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    scorer = GoalSimilarity("ssim", "last")
    obs = Observation(rgb=goal, goal=goal)
    expected = scorer.similarity(frames[:, -1], uint8_to_unit(goal)).double().numpy()
    np.testing.assert_allclose(scorer.score(obs, np.zeros((3, 4), np.int64), frames), expected)
    frames[:, :-1] = 0.0  # earlier frames do not count
    np.testing.assert_allclose(scorer.score(obs, np.zeros((3, 4), np.int64), frames), expected)
