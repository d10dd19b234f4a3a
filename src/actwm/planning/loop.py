"""The closed loop: observe -> propose M plans of horizon L -> imagine all -> revise -> execute k -> repeat.

    agent = Agent(world, proposer, scorer, stop, PlannerConfig(proposals=8, horizon=3, execute=1))
    result = agent.run_episode(task, episode, seed=0)    # the task's metrics + planning statistics

The same proposer (the base policy) runs with and without a world model: without one (`imagine` returns
None) the agent follows the proposer's first plan; with one it imagines every proposal in one batch and
executes the best-scoring plan's first k actions (iterative proposers refine over several batches first).
Stopping is the stop rule's decision, checked before each decision; oracle stop rules are flagged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from actwm.planning.interface import ImaginedWorld, Observation, Proposer, Scorer, Task


@dataclass(frozen=True)
class PlannerConfig:
    """Loop settings.

    Attributes:
        proposals: M, plans imagined per batch.
        horizon: L, agent actions per plan.
        execute: k, actions of the chosen plan executed before replanning (1 <= k <= L).
        max_decisions: decision budget per episode (None: until the task's action budget is spent).
    """

    proposals: int = 8
    horizon: int = 3
    execute: int = 1
    max_decisions: int | None = None

    def __post_init__(self) -> None:
        if self.proposals < 1:
            raise ValueError(f"PlannerConfig.proposals (M) must be >= 1, got {self.proposals}")
        if self.horizon < 1:
            raise ValueError(f"PlannerConfig.horizon (L) must be >= 1, got {self.horizon}")
        if not 1 <= self.execute <= self.horizon:
            raise ValueError(f"PlannerConfig.execute (k) must be in 1..horizon={self.horizon}, got {self.execute}")
        if self.max_decisions is not None and self.max_decisions < 1:
            raise ValueError(f"PlannerConfig.max_decisions must be >= 1, got {self.max_decisions}")


StopRule = Callable[[Observation, Task], bool]


class Agent:
    """A planning agent: one world model, proposer, scorer and stop rule."""

    def __init__(
        self, world: ImaginedWorld, proposer: Proposer, scorer: Scorer, stop: StopRule, cfg: PlannerConfig
    ) -> None:
        self.world, self.proposer, self.scorer, self.stop, self.cfg = world, proposer, scorer, stop, cfg

    def decide(self, obs: Observation) -> tuple[np.ndarray, dict[str, Any]]:
        """One decision: `(L,)` or `(L, D)` chosen plan, and statistics (imagined candidates, best score)."""
        cfg = self.cfg
        plans = self.proposer.propose(obs, cfg.proposals, cfg.horizon)
        frames = self.world.imagine(obs, plans)
        if frames is None:
            return plans[0], {"imagined": 0, "score": None}
        best_plan, best_score, imagined = plans[0], -np.inf, 0
        while True:
            scores = self.scorer.score(obs, plans, frames)
            imagined += len(plans)
            i = int(np.argmax(scores))
            if scores[i] > best_score:
                best_plan, best_score = plans[i], float(scores[i])
            plans = self.proposer.refine(plans, scores)
            if plans is None:
                break
            frames = self.world.imagine(obs, plans)
        return best_plan, {"imagined": imagined, "score": best_score}

    def run_episode(self, task: Task, episode: Any, seed: int) -> dict[str, Any]:
        """Run one episode; returns the task's result plus decisions, imagined plans and seconds."""
        # 1. reset everything from the episode seed
        rng = np.random.default_rng([seed, 7])
        obs = task.reset(episode)
        self.world.reset(seed)
        self.proposer.reset(task.vocabulary, rng)
        stopped, decisions, imagined, t0 = False, 0, 0, time.perf_counter()
        executed_actions: list[Any] = []
        # 2. decide and act until the stop rule fires or a budget is spent
        while obs.step < task.budget:
            if self.stop(obs, task):
                stopped = True
                break
            if self.cfg.max_decisions is not None and decisions >= self.cfg.max_decisions:
                break
            plan, stats = self.decide(obs)
            decisions += 1
            imagined += stats["imagined"]
            k = min(self.cfg.execute, task.budget - obs.step)
            for action in plan[:k]:
                obs = task.step(action)
                executed_actions.append(np.asarray(action).tolist())
            self.proposer.advance(k)
        # 3. the task's metrics, plus what the planner spent
        result = dict(task.result(stopped))
        result.update(
            decisions=decisions,
            imagined_plans=imagined,
            seconds=time.perf_counter() - t0,
            executed=executed_actions,
            seed=seed,
        )
        return result

    def describe(self) -> dict[str, Any]:
        """The agent's full configuration (for result fingerprints)."""
        return {
            "planner": asdict(self.cfg),
            "world_model": self.world.fingerprint(),
            "proposer": getattr(self.proposer, "name", type(self.proposer).__name__),
            "scorer": getattr(self.scorer, "name", type(self.scorer).__name__),
            "stop": getattr(self.stop, "name", type(self.stop).__name__),
            "oracle": bool(self.world.is_oracle or getattr(self.stop, "is_oracle", False)),
        }
