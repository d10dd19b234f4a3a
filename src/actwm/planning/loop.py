"""The closed loop: observe -> propose M plans of horizon L -> imagine all -> revise -> execute k -> repeat.

    agent = Agent(world, proposer, scorer, stop, PlannerConfig(proposals=8, horizon=3, execute=1))
    result = agent.run_episode(task, episode, seed=0)    # the task's metrics + planning statistics

The same proposer (the base policy) runs with and without a world model: without one (`imagine` returns
None) the agent follows the proposer's first plan; with one it imagines every proposal in one batch and
executes the best-scoring plan's first k actions (iterative proposers refine over several batches first).
Stopping is the agent's own decision: without a world model the stop rule (a calibrated similarity threshold)
fires before each decision; with one, the agent stops when the "stay" plan (a plan that starts with stop)
scores best among the imagined futures, allowed once the view passes the stop rule's floor
(`allows_stay`); with `PlannerConfig.always_stop_rule` the stop rule also fires before each decision with a
world model (the same stop as the base agent's). Oracle stop rules (flagged in results) fire before each decision
in both cases, and so do stop rules with `checks_every_decision` (vocabularies without a stop primitive, e.g.
push's ee7). `PlannerConfig.base_margin` makes imagination revise rather than replace the base policy's own plan.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from actwm.checks import require, require_at_least
from actwm.pixels import unit_to_uint8
from actwm.planning.interface import STOP, ImaginedWorld, Observation, Proposer, Scorer, Task


@dataclass(frozen=True)
class PlannerConfig:
    """Loop settings.

    Attributes:
        proposals: M, plans imagined per batch.
        horizon: L, agent actions per plan.
        execute: k, actions of the chosen plan executed before replanning (1 <= k <= L).
        max_decisions: decision budget per episode (None: until the task's action budget is spent).
        base_margin: revise, not replace: the proposer's own plan (row 0 of its first batch) is kept unless
            another imagined plan scores more than this above it (0: plain score-and-select).
        always_stop_rule: the stop rule fires before each decision with a world model too (the base agent's
            own stop, judged on the real view); imagination then revises only the moves (and "stay").
    """

    proposals: int = 8
    horizon: int = 3
    execute: int = 1
    max_decisions: int | None = None
    base_margin: float = 0.0
    always_stop_rule: bool = False

    def __post_init__(self) -> None:
        require(self.proposals >= 1, self, "proposals", ">= 1 (M, plans per batch)")
        require(self.horizon >= 1, self, "horizon", ">= 1 (L, actions per plan)")
        require(1 <= self.execute <= self.horizon, self, "execute", f"in 1..horizon={self.horizon} (k)")
        require_at_least(self, 1, "max_decisions", optional=True)
        require(self.base_margin >= 0 and np.isfinite(self.base_margin), self, "base_margin", "finite and >= 0")


StopRule = Callable[[Observation, Task], bool]


class Agent:
    """A planning agent: one world model, proposer, scorer and stop rule."""

    def __init__(
        self, world: ImaginedWorld, proposer: Proposer, scorer: Scorer, stop: StopRule, cfg: PlannerConfig
    ) -> None:
        self.world, self.proposer, self.scorer, self.stop, self.cfg = world, proposer, scorer, stop, cfg

    def decide(self, obs: Observation, task: Task) -> tuple[np.ndarray, dict[str, Any]]:
        """One decision: `(L,)` or `(L, D)` chosen plan, and statistics (imagined candidates, best score).

        A discrete plan that starts with "stop" (stay here) may win only where the stop rule allows staying
        (`stop.allows_stay(obs, task)`, e.g. the current view is similar enough to the goal).
        """
        cfg = self.cfg
        plans = self.proposer.propose(obs, cfg.proposals, cfg.horizon)
        frames = self.world.imagine(obs, plans)
        if frames is None:
            return plans[0], {"imagined": 0, "score": None}
        allows_stay = getattr(self.stop, "allows_stay", None)
        stay_ok = allows_stay is None or allows_stay(obs, task)
        best_plan, best_score, imagined, best_frames = plans[0], -np.inf, 0, None
        margin = cfg.base_margin  # the proposer's own plan (row 0 of the first batch) gets this head start
        while True:
            scores = np.asarray(self.scorer.score(obs, plans, frames), dtype=np.float64)
            scores[0] += margin
            margin = 0.0
            if not stay_ok and task.vocabulary.kind == "discrete":
                scores = np.where(plans[:, 0] == STOP, -np.inf, scores)
            imagined += len(plans)
            i = int(np.argmax(scores))
            if scores[i] > best_score:
                best_plan, best_score, best_frames = plans[i], float(scores[i]), frames[i]
            plans = self.proposer.refine(plans, scores)
            if plans is None:
                break
            frames = self.world.imagine(obs, plans)
        return best_plan, {"imagined": imagined, "score": best_score, "frames": best_frames}

    def run_episode(self, task: Task, episode: Any, seed: int, record: bool = False) -> dict[str, Any]:
        """Run one episode; returns the task's result plus decisions, imagined plans and seconds.

        With `record`, `result["video"]` is `(T, H, 3W, 3)` uint8: per executed action the real frame, the
        chosen plan's imagined frame for that action (black without a world model) and the goal image.
        """
        # 1. reset everything from the episode seed
        rng = np.random.default_rng([seed, 7])
        obs = task.reset(episode)
        self.world.reset(seed)
        self.proposer.reset(task.vocabulary, rng)
        stopped, decisions, imagined, t0 = False, 0, 0, time.perf_counter()
        executed_actions: list[Any] = []
        video: list[np.ndarray] = []
        # 2. decide and act until the stop rule fires or a budget is spent
        imagines = getattr(self.world, "imagines", True)
        while obs.step < task.budget:
            # without imagination the stop rule decides; with it, "stay" must win a decision (oracle rules: both)
            rule = not imagines or self.cfg.always_stop_rule or getattr(self.stop, "is_oracle", False)
            if (rule or getattr(self.stop, "checks_every_decision", False)) and self.stop(obs, task):
                stopped = True
                break
            if self.cfg.max_decisions is not None and decisions >= self.cfg.max_decisions:
                break
            plan, stats = self.decide(obs, task)
            decisions += 1
            imagined += stats["imagined"]
            actions = self._to_execute(task, obs, plan)
            if not actions:  # the chosen plan starts with "stop": the agent's decision
                stopped = True
                break
            for j, action in enumerate(actions):
                obs = task.step(action)
                executed_actions.append(np.asarray(action).tolist())
                if record:
                    video.append(_video_frame(obs, stats["frames"], j))
            self.proposer.advance(len(actions))
        # 3. the task's metrics, plus what the planner spent
        result = dict(task.result(stopped))
        result.update(
            decisions=decisions,
            imagined_plans=imagined,
            seconds=time.perf_counter() - t0,
            executed=executed_actions,
            seed=seed,
        )
        if record:
            result["video"] = np.stack(video) if video else np.zeros((0, *obs.rgb.shape[:1], 3 * obs.rgb.shape[1], 3))
        return result

    def _to_execute(self, task: Task, obs: Observation, plan: np.ndarray) -> list[Any]:
        """The first k actions of `plan` (within the budget), cut at its first "stop" (trailing stops pad)."""
        k = min(self.cfg.execute, task.budget - obs.step)
        out = []
        for action in plan[:k]:
            if task.vocabulary.kind == "discrete" and int(action) == STOP:
                break
            out.append(action)
        return out

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


def _video_frame(obs: Observation, imagined: Any, j: int) -> np.ndarray:
    """`(H, 3W, 3)` uint8: real view | imagined view of the executed action j (black if none) | goal."""
    fake = np.zeros_like(obs.rgb) if imagined is None else unit_to_uint8(imagined[j])
    goal = np.zeros_like(obs.rgb) if obs.goal is None else obs.goal
    return np.concatenate([obs.rgb, fake, goal], axis=1)
