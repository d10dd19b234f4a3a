"""Run planning experiments: a typed config -> task, world model, agent -> episodes -> results with fingerprint.

    result = run(PlanRunConfig(task="imagenav", world_model="oracle", planner=PlannerConfig(8, 3, 1), episodes=20))
    result["summary"]["success_rate"], result["fingerprint"]["episode_set"]

Every check that can fail runs before the first episode (unknown task / proposer, a world model whose
action space or image size does not fit the task, goal images of the wrong size).
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from tqdm.auto import tqdm

import actwm.planning.serve  # noqa: F401  (registers the "http" world model)
from actwm import __version__
from actwm.checks import require, require_at_least, require_choice
from actwm.planning.interface import ImaginedWorld, Task, check_image
from actwm.planning.loop import Agent, PlannerConfig
from actwm.planning.policy import base_policy
from actwm.planning.proposers import CEM, MPPI, Enumerate, RandomShooting
from actwm.planning.push_policy import DEFAULT_PUSH_STOP, BlockToTarget, PushPerception, PushStop
from actwm.planning.scorers import GoalSimilarity, NeverStop, OracleStop, SimilarityStop
from actwm.planning.tasks import ImageNavConfig, ImageNavTask, PushConfig, PushTask
from actwm.planning.worlds import make_world_model
from actwm.rollout.rollout import RolloutConfig
from actwm.video import write_mp4

TASKS = ("imagenav", "push")
PROPOSERS = ("base", "cem", "random", "enumerate", "mppi")

#: Stop thresholds calibrated on training scenes 0..23 (`actwm plan --calibrate-stop`, 64 px, seed 0), the
#: smallest with <= 5% false stops: "ncc" 0.604 (stops at 60% of views inside the success region), "ssim"
#: 0.213 (40%).
DEFAULT_STOP_THRESHOLDS = {"ncc": 0.604, "ssim": 0.213}
#: With a world model, "stay here" may win a decision once the view is this similar (the balanced-accuracy
#: threshold of the same calibration: imagination then shows whether any move looks closer to the goal).
STAY_FLOORS = {"ncc": 0.491, "ssim": 0.114}


@dataclass(frozen=True)
class PlanRunConfig:
    """Everything that defines a planning run (recorded in full in the result's fingerprint).

    Attributes:
        task: "imagenav" or "push". size: image size (px). budget: agent actions per episode (None: the task's).
        world_model: "none", "oracle", a checkpoint directory or an http(s):// URL.
        proposer: one of `PROPOSERS` ("base" = the template-matching base policy).
        planner: the loop's settings (`PlannerConfig`: M, L, k, the base margin, ...); here L = k = 10 by
            default. iterations: CEM / MPPI iterations.
        episodes, seed: the episode set (`seed` picks it) and its size.
        scorer, reduce: goal-similarity metric of imagined frames and its reduction over a plan.
        stop_metric, stop_threshold: the agent's stop (None: the calibrated default; "never" disables).
        oracle_stop: ORACLE upper-bound variant: stop when the task says the goal is reached.
        rollout_steps: denoising steps of a video world model.
        compile: compile a checkpoint world model's sampling backbone (`RolloutConfig.compile`; pays after a
            one-off compile of about 30 s when many decisions are imagined).
    """

    task: str = "imagenav"
    world_model: str = "none"
    proposer: str = "base"
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(8, 10, 10))
    iterations: int = 3
    episodes: int = 40
    seed: int = 0
    scorer: str = "ssim"
    reduce: str = "last"
    stop_metric: str = "ncc"
    stop_threshold: float | None = None
    oracle_stop: bool = False
    size: int = 64
    budget: int | None = None
    rollout_steps: int = 10
    compile: bool = False

    def __post_init__(self) -> None:
        require_choice(self, "task", TASKS)
        require_choice(self, "proposer", PROPOSERS)
        require(isinstance(self.planner, PlannerConfig), self, "planner", "a PlannerConfig")
        require_at_least(self, 1, "episodes", "rollout_steps")
        require_at_least(self, 0, "seed")
        require_at_least(self, 1, "budget", optional=True)
        calibrated = self.stop_metric == "never" or self.stop_metric in DEFAULT_STOP_THRESHOLDS
        require(
            calibrated or self.stop_threshold is not None,
            self,
            "stop_metric",
            f"'never' or one with a calibrated default {sorted(DEFAULT_STOP_THRESHOLDS)} (or pass a stop threshold)",
        )
        finite = self.stop_threshold is None or math.isfinite(self.stop_threshold)
        require(finite, self, "stop_threshold", "finite or None")

    @property
    def threshold(self) -> float | None:
        if self.stop_metric == "never":
            return None
        if self.task == "push":  # metres of seen block-to-target distance (`PushStop`)
            return DEFAULT_PUSH_STOP if self.stop_threshold is None else self.stop_threshold
        return DEFAULT_STOP_THRESHOLDS[self.stop_metric] if self.stop_threshold is None else self.stop_threshold


def build_task(cfg: PlanRunConfig) -> Task:
    if cfg.task == "imagenav":
        base = ImageNavConfig()
        return ImageNavTask(ImageNavConfig(size=cfg.size, budget=cfg.budget or base.budget))
    base = PushConfig()
    return PushTask(PushConfig(size=cfg.size, budget=cfg.budget or base.budget))


def build_proposer(cfg: PlanRunConfig):
    if cfg.proposer == "base":  # the task's registered base policy (`actwm.planning.policy.BASE_POLICIES`)
        return base_policy(cfg.task)
    if cfg.proposer == "cem":
        return CEM(iterations=cfg.iterations)
    if cfg.proposer == "mppi":
        return MPPI(iterations=cfg.iterations)
    return {"random": RandomShooting, "enumerate": Enumerate}[cfg.proposer]()


def build_world(cfg: PlanRunConfig) -> ImaginedWorld:
    options: dict[str, Any] = {}
    if cfg.world_model not in ("none", "oracle"):
        options["rollout_cfg"] = RolloutConfig(steps=cfg.rollout_steps, seed=cfg.seed, compile=cfg.compile)
    return make_world_model(cfg.world_model, **options)


def build_agent(cfg: PlanRunConfig, world: ImaginedWorld) -> Agent:
    """The task's scorer and stop rule around the chosen proposer. Push reads block and target from frames: its
    base policy, scorer and stop share one `PushPerception`; `threshold` is then metres of seen distance."""
    proposer = build_proposer(cfg)
    perception = (getattr(proposer, "perception", None) or PushPerception()) if cfg.task == "push" else None
    scorer = BlockToTarget(perception) if perception is not None else GoalSimilarity(cfg.scorer, cfg.reduce)
    if cfg.oracle_stop:
        stop = OracleStop()
    elif cfg.stop_metric == "never":
        stop = NeverStop()
    elif perception is not None:
        stop = PushStop(perception, cfg.threshold)
    else:
        stop = SimilarityStop(GoalSimilarity(cfg.stop_metric), cfg.threshold, STAY_FLOORS.get(cfg.stop_metric))
    return Agent(world, proposer, scorer, stop, cfg.planner)


def prepare(cfg: PlanRunConfig, task: Task, agent: Agent, episodes: Any) -> None:
    """All checks that must pass before the first episode (ValueError naming what is wrong)."""
    agent.world.bind(task)
    agent.proposer.reset(task.vocabulary, np.random.default_rng(0))
    like = np.zeros((*task.image_size, 3), np.uint8)
    for ep in episodes:
        check_image(ep.goal_image, f"goal image of episode {ep.index}", like=like)


def shard() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_episodes(
    task: Task, agent: Agent, episodes: Any, seed: int, progress: bool = True, videos: str | None = None
) -> list[dict[str, Any]]:
    """Run every episode of the set; episode i uses seed `seed * 100_000 + i`.

    Under torch.distributed, rank r runs episodes i with `i % world == r` and every rank gets all results,
    ordered by episode (identical to one process: each episode's seed depends only on its index).
    """
    rank, world = shard()
    mine = [ep for ep in episodes if ep.index % world == rank]
    out = []
    for ep in tqdm(mine, desc=f"episodes (M={agent.cfg.proposals})", disable=not progress or rank != 0):
        result = agent.run_episode(task, ep, seed=seed * 100_000 + ep.index, record=videos is not None)
        if videos is not None:
            path = Path(videos) / f"episode{ep.index:04d}_M{agent.cfg.proposals}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            if len(result["video"]):
                write_mp4(path, result.pop("video"), fps=2.0)
            result.pop("video", None)
        out.append(result)
    if world == 1:
        return out
    gathered: list[list[dict[str, Any]]] = [[] for _ in range(world)]
    dist.all_gather_object(gathered, out)
    return sorted((r for part in gathered for r in part), key=lambda r: r["episode"])


def fingerprint(cfg: PlanRunConfig, agent: Agent, episodes: Any) -> dict[str, Any]:
    """What produced a result: full config, seeds, episode set, world model (checkpoint sha256), versions."""
    return {
        "config": asdict(cfg),
        "agent": agent.describe(),
        "episode_set": {"id": episodes.id, "seed": episodes.seed, "n": len(episodes), "task": episodes.task},
        "episode_seeds": [cfg.seed * 100_000 + ep.index for ep in episodes],
        "stop_threshold": cfg.threshold,
        "processes": shard()[1],
        "actwm_version": __version__,
        "python": platform.python_version(),
    }


def run(
    cfg: PlanRunConfig, progress: bool = True, sweep: list[int] | None = None, videos: str | None = None
) -> dict[str, Any]:
    """Run `cfg` (and, with `sweep`, once per number of proposals M); returns the JSON-able result."""
    # 1. build everything and check it before any episode runs
    task = build_task(cfg)
    try:
        world = build_world(cfg)
        agent = build_agent(cfg, world)
        episodes = task.episodes(seed=cfg.seed, n=cfg.episodes)
        prepare(cfg, task, agent, episodes)
        for m in sweep or []:
            with_proposals(cfg, m)  # validates every M up front
        # 2. the main run, then the sweep
        results = run_episodes(task, agent, episodes, cfg.seed, progress, videos)
        out = {"summary": _summary(task, results, agent), "episodes": results}
        if sweep:
            out["sweep"] = []
            for m in sweep:
                agent_m = build_agent(with_proposals(cfg, m), world)
                same = m == cfg.planner.proposals
                res = results if same else run_episodes(task, agent_m, episodes, cfg.seed, progress)
                out["sweep"].append({"proposals": m, "summary": _summary(task, res, agent_m), "episodes": res})
        out["fingerprint"] = fingerprint(cfg, agent, episodes)
        return out
    finally:
        task.close()


def with_proposals(cfg: PlanRunConfig, proposals: int) -> PlanRunConfig:
    """`cfg` with M = `proposals` (validated)."""
    return replace(cfg, planner=replace(cfg.planner, proposals=proposals))


def _summary(task: Task, results: list[dict[str, Any]], agent: Agent) -> dict[str, Any]:
    summary = dict(task.summary(results))
    desc = agent.describe()
    summary.update(
        world_model=desc["world_model"].get("type"),
        proposer=desc["proposer"],
        scorer=desc["scorer"],
        stop=desc["stop"],
        oracle=desc["oracle"],
        proposals=agent.cfg.proposals,
        imagined_plans_per_episode=float(np.mean([r["imagined_plans"] for r in results])),
        seconds_per_episode=float(np.mean([r["seconds"] for r in results])),
    )
    return summary
