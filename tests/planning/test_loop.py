"""The closed loop, proposers and scorers."""

import numpy as np
import pytest

from actwm.planning.interface import Observation, get_vocabulary
from actwm.planning.loop import Agent, PlannerConfig
from actwm.planning.proposers import CEM, MPPI, Enumerate, RandomShooting
from actwm.planning.scorers import GoalSimilarity, OracleStop, SimilarityStop
from actwm.planning.worlds import NoWorld, OracleWorld
from tests.planning.conftest import free_episode


class _Quadratic:
    """Score = -||plan - target||^2 (continuous) or matches with a target sequence (discrete)."""

    def __init__(self, target):
        self.target = np.asarray(target)

    def __call__(self, plans):
        if plans.ndim == 2:
            return (plans == self.target).sum(axis=1).astype(float)
        return -((plans - self.target) ** 2).sum(axis=(1, 2))


def _run_cem(proposer, vocab, target, count=32, horizon=4):
    proposer.reset(vocab, np.random.default_rng(0))
    f = _Quadratic(target)
    obs = Observation(rgb=np.zeros((8, 8, 3), np.uint8))
    plans = proposer.propose(obs, count, horizon)
    first = f(plans).max()
    while plans is not None:
        scores = f(plans)
        plans = proposer.refine(plans, scores)
    return first, f(proposer.mode()[None])[0]


def test_cem_improves_a_known_quadratic():
    vocab = get_vocabulary("nav3")
    target = np.tile([0.3, -0.2, 0.5], (4, 1))
    first, final = _run_cem(CEM(iterations=12, smoothing=0.1), vocab, target, count=64)
    assert final > first and final > -0.02  # converges near the optimum (0), far better than the first batch


def test_mppi_improves_a_known_quadratic():
    vocab = get_vocabulary("nav3")
    target = np.tile([0.1, 0.2, -0.4], (4, 1))
    first, final = _run_cem(MPPI(iterations=12, temperature=0.05, smoothing=0.3), vocab, target, count=64)
    assert final > first and final > -0.05


def test_discrete_cem_finds_the_target_sequence():
    vocab = get_vocabulary("nav_discrete")
    target = np.array([0, 1, 2, 0, 0, 1])
    _, final = _run_cem(CEM(iterations=5, smoothing=0.0), vocab, target, count=64, horizon=6)
    assert final == 6


def test_cem_warm_start_shifts_by_executed_actions():
    vocab = get_vocabulary("nav_discrete")
    cem = CEM(iterations=4, smoothing=0.0)
    cem.reset(vocab, np.random.default_rng(0))
    f = _Quadratic(np.array([0, 1, 2]))
    plans = cem.propose(Observation(rgb=np.zeros((8, 8, 3), np.uint8)), 48, 3)
    while plans is not None:
        plans = cem.refine(plans, f(plans))
    cem.advance(1)
    assert cem.mode()[:2].tolist() == [1, 2]


def test_loop_with_the_oracle_solves_a_trivial_episode_deterministically(mini_task):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    assert episode is not None
    scorer = GoalSimilarity("ssim")
    agent = Agent(OracleWorld(), Enumerate(), scorer, OracleStop(), PlannerConfig(proposals=9, horizon=2, execute=1))
    agent.world.bind(mini_task)
    runs = [agent.run_episode(mini_task, episode, seed=0) for _ in range(2)]
    assert runs[0]["success"] and runs[0]["stopped"]
    assert runs[0]["actions"] <= 6
    for r in runs:
        r.pop("seconds")
    assert runs[0] == runs[1]


def test_oracle_imagination_equals_executing_the_plan(mini_task):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    world = OracleWorld()
    world.bind(mini_task)
    obs = mini_task.reset(episode)
    plans = np.array([[1, 0, 0], [2, 2, 0]])
    frames = world.imagine(obs, plans)
    assert frames.shape == (2, 3, 3, 32, 32)
    assert np.array_equal(mini_task.env.unwrapped.pose, episode[1])  # the true state is restored
    for m, plan in enumerate(plans):
        mini_task.reset(episode)
        for step, a in enumerate(plan):
            real = mini_task.step(a).rgb
            assert np.array_equal((frames[m, step].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), real)


def test_same_seed_same_episode_results(mini_task):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    scorer = GoalSimilarity("ssim")
    results = []
    for world, proposer, seed in [
        (OracleWorld(), CEM(iterations=2), 5),
        (OracleWorld(), CEM(iterations=2), 5),
        (NoWorld(), RandomShooting(), 5),
        (NoWorld(), RandomShooting(), 5),
        (NoWorld(), RandomShooting(), 6),
    ]:
        cfg = PlannerConfig(proposals=4, horizon=2, execute=2, max_decisions=3)
        agent = Agent(world, proposer, scorer, SimilarityStop(scorer, 0.99), cfg)
        agent.world.bind(mini_task)
        r = agent.run_episode(mini_task, episode, seed=seed)
        r.pop("seconds")
        results.append(r)
    assert results[0] == results[1] and results[2] == results[3]
    assert results[2]["executed"] != results[4]["executed"]  # the seed drives the proposals


def test_no_world_model_follows_the_proposers_first_plan(mini_task):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    scorer = GoalSimilarity("ssim")
    cfg = PlannerConfig(proposals=8, horizon=3, execute=2, max_decisions=2)
    agent = Agent(NoWorld(), CEM(iterations=3), scorer, SimilarityStop(scorer, 2.0), cfg)
    r = agent.run_episode(mini_task, episode, seed=1)
    assert r["imagined_plans"] == 0
    assert r["executed"] == [0, 0, 0, 0]  # CEM's row 0 is its mode: "forward" (index 0) under a uniform prior


def test_unknown_scorer_metric_is_refused():
    with pytest.raises(ValueError, match="unknown scorer metric"):
        GoalSimilarity("psnr")


def test_base_margin_keeps_the_proposers_plan_unless_another_is_clearly_better(mini_task):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    scorer = GoalSimilarity("ssim")
    world = OracleWorld()
    world.bind(mini_task)
    obs = mini_task.reset(episode)
    proposer = Enumerate()
    proposer.reset(get_vocabulary("nav_discrete"), np.random.default_rng(0))
    plans = proposer.propose(obs, 9, 2)
    scores = scorer.score(obs, plans, world.imagine(obs, plans))
    best = int(np.argmax(scores))
    assert best != 0  # the episode needs two left turns; row 0 is "forward, forward"
    gap = scores[best] - scores[0]
    for margin, expected in [(0.0, best), (0.5 * gap, best), (2.0 * gap, 0)]:
        agent = Agent(world, Enumerate(), scorer, OracleStop(), PlannerConfig(9, 2, 1, base_margin=margin))
        agent.proposer.reset(get_vocabulary("nav_discrete"), np.random.default_rng(0))
        plan, _ = agent.decide(obs, mini_task)
        assert plan.tolist() == plans[expected].tolist()


@pytest.mark.parametrize("always, decisions", [(True, 0), (False, 1)])
def test_always_stop_rule_stops_on_the_real_view_with_a_world_model(mini_task, always, decisions):
    episode = free_episode(mini_task, scene=3, turns=2, forwards=2)
    scorer = GoalSimilarity("ssim")
    cfg = PlannerConfig(4, 2, 1, max_decisions=1, always_stop_rule=always)
    agent = Agent(OracleWorld(), Enumerate(), scorer, SimilarityStop(scorer, -1.0), cfg)  # the rule always fires
    agent.world.bind(mini_task)
    r = agent.run_episode(mini_task, episode, seed=0)
    assert r["decisions"] == decisions and r["stopped"] == always
