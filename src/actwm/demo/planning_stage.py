"""The demo's closed-loop stage: ImageNav on held-out scenes with no world model, the demo's model, the oracle.

All three agents use the same base-policy proposals (`TemplateMatchPolicy`), the same scorer and the same
stop rule; only the world model differs, and it revises the base policy's own plan only when an imagined
alternative scores clearly better (`BASE_MARGIN`). Tasks run at the demo model's image size with the demo's renders
(supersampled), on planning scenes (seeds >= 2e9, disjoint from the demo's training and held-out scenes).
The stop threshold is calibrated at this size on TRAINING scenes 0..n-1 (`actwm.planning.calibrate`).

The agent without a world model and the oracle run in a second process on the second core while the demo
model's agent runs here. Results: `DIR/planning/<agent>.json` (resumable: an agent whose file exists with
the same settings is skipped), `metrics.json["planning"]` and a report.html section.
"""

from __future__ import annotations

import concurrent.futures
import html
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actwm.demo import report
from actwm.demo.config import DemoConfig
from actwm.io import atomic_path, atomic_write_json, read_json
from actwm.models.world_model import WorldModel
from actwm.planning.calibrate import best_threshold, stop_samples
from actwm.planning.interface import ImaginedWorld
from actwm.planning.loop import Agent, PlannerConfig
from actwm.planning.policy import TemplateMatchPolicy
from actwm.planning.runner import PlanRunConfig, _summary, fingerprint, prepare, run_episodes
from actwm.planning.scorers import GoalSimilarity, SimilarityStop
from actwm.planning.tasks import ImageNavConfig, ImageNavTask
from actwm.planning.translate import FrameStep
from actwm.planning.worlds import CheckpointWorld, NoWorld, OracleWorld
from actwm.rollout.rollout import RolloutConfig
from actwm.sim.nav import NavConfig

__all__ = ["PlanSettings", "plan_settings", "stage_plan", "make_world", "imagenav_task", "calibrated_stop"]

AGENTS = ("none", "action", "oracle")
#: Imagination revises, not replaces, the base policy: its own plan is kept unless an imagined alternative
#: scores more than this (SSIM) above it, and the base agent's stop rule fires with a world model too.
#: Chosen on the dev episode set (seed 1, n = 16) with the demo model: SR 0.06 (margin 0 / 0.03), 0.19
#: (margin 0.1), 0.19 (stop rule alone), 0.25 (both).
BASE_MARGIN = 0.1
LABELS = {"none": "no world model (base policy)", "action": "demo model (EgoWM)", "oracle": "ORACLE (simulator)"}


@dataclass(frozen=True)
class PlanSettings:
    """The closed-loop stage's settings (from `DemoConfig.plan_*`).

    Attributes: episodes (n), proposals (M), horizon (L), execute (k), budget (agent actions per episode),
    rollout_steps (denoising steps of the demo model), sweep (the M values of the SR-vs-M curve),
    calib_scenes (training scenes of the stop calibration), size, supersample, seed, guidance (+ interval),
    frame_step (the demo robot's per-frame motion: metres, radians).
    """

    episodes: int
    proposals: int
    horizon: int
    execute: int
    budget: int
    rollout_steps: int
    sweep: tuple[int, ...]
    calib_scenes: int
    size: int
    supersample: int
    seed: int
    guidance: float
    guidance_interval: tuple[float, float]
    frame_step: tuple[float, float]
    forward_range: tuple[int, int] = (4, 12)
    view_turns: int = 3

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.budget < 1 or self.calib_scenes < 1 or self.rollout_steps < 1:
            raise ValueError(f"DemoConfig.plan_*: episodes, budget, calib scenes, steps must be >= 1, got {self}")
        PlannerConfig(self.proposals, self.horizon, self.execute)
        if not self.sweep or min(self.sweep) < 1:
            raise ValueError(f"DemoConfig.plan_sweep: needs M values >= 1, got {self.sweep}")


def plan_settings(cfg: DemoConfig) -> PlanSettings:
    return PlanSettings(
        episodes=cfg.plan_episodes,
        proposals=cfg.plan_proposals,
        horizon=cfg.plan_horizon,
        execute=cfg.plan_execute,
        budget=cfg.plan_budget,
        rollout_steps=cfg.plan_steps,
        sweep=tuple(cfg.plan_sweep),
        calib_scenes=cfg.plan_calib_scenes,
        size=cfg.size,
        supersample=cfg.supersample,
        seed=cfg.seed,
        guidance=cfg.guidance,
        guidance_interval=tuple(cfg.guidance_interval),
        frame_step=(cfg.robot_speed, cfg.robot_turn_rate),
        forward_range=tuple(cfg.plan_forward_range),
        view_turns=cfg.plan_view_turns,
    )


def imagenav_task(s: PlanSettings) -> ImageNavTask:
    """ImageNav at the demo's size with the demo's (supersampled) renders."""
    return ImageNavTask(
        ImageNavConfig(
            size=s.size,
            budget=s.budget,
            forward_range=tuple(s.forward_range),
            view_turns=s.view_turns,
            nav=NavConfig(supersample=s.supersample),
        )
    )


def calibrated_stop(s: PlanSettings, path: Path) -> dict[str, float]:
    """NCC stop threshold (<= 5% false stops) and stay floor (balanced accuracy) at this size; cached in `path`."""
    key = {"size": s.size, "supersample": s.supersample, "scenes": s.calib_scenes, "seed": s.seed}
    if path.is_file() and read_json(path).get("key") == key:
        return read_json(path)
    scorer = GoalSimilarity("ncc")
    near, far = stop_samples(scorer, scenes=s.calib_scenes, size=s.size, seed=s.seed, supersample=s.supersample)
    threshold, recall, false_stop = best_threshold(near, far)
    cands = np.unique(np.concatenate([near, far]))
    balanced = [((near >= t).mean() + (far < t).mean()) / 2 for t in cands]
    floor = float(min(cands[int(np.argmax(balanced))], threshold))
    res = {"key": key, "metric": "ncc", "threshold": threshold, "stay_floor": floor, "recall": recall}
    res.update(false_stop_rate=false_stop, near=len(near), far=len(far), training_scenes=[0, s.calib_scenes - 1])
    atomic_write_json(path, res)
    return res


def make_world(kind: str, s: PlanSettings, model_dir: Path | None = None) -> ImaginedWorld:
    """ "none", "oracle" or a checkpoint (the demo's rollout settings; agent actions re-timed to its frame rate)."""
    if kind == "none":
        return NoWorld()
    if kind == "oracle":
        return OracleWorld()
    if model_dir is None:
        raise ValueError(f"closed-loop stage: world model {kind!r} needs a checkpoint directory")
    rcfg = RolloutConfig(
        steps=s.rollout_steps,
        seed=s.seed,
        guidance=s.guidance,
        guidance_interval=tuple(s.guidance_interval) if s.guidance != 1.0 else None,
    )
    step = FrameStep(*s.frame_step)
    return CheckpointWorld(WorldModel.load(model_dir), rcfg, frame_step=step, seed=s.seed, source=str(model_dir))


def _agent(world: ImaginedWorld, s: PlanSettings, stop: dict[str, float], proposals: int) -> Agent:
    rule = SimilarityStop(GoalSimilarity("ncc"), stop["threshold"], stop["stay_floor"])
    return Agent(
        world,
        TemplateMatchPolicy(),
        GoalSimilarity("ssim", "last"),
        rule,
        PlannerConfig(proposals, s.horizon, s.execute, base_margin=BASE_MARGIN, always_stop_rule=True),
    )


def run_agent(kind: str, s: PlanSettings, stop: dict[str, float], out: Path, model_dir: Path | None = None) -> dict:
    """One agent on the episode set (main M, then the sweep); written to `out` (skipped when it exists)."""
    key = {"settings": _jsonable(asdict(s)), "stop": stop, "model": str(model_dir) if model_dir else None}
    key.update(base_margin=BASE_MARGIN, always_stop_rule=True)
    if out.is_file() and read_json(out).get("key") == key:
        print(f"closed-loop results exist: {out}", flush=True)
        return read_json(out)
    # 1. build and check everything before the first episode
    task = imagenav_task(s)
    try:
        world = make_world(kind, s, model_dir)
        agent = _agent(world, s, stop, s.proposals)
        episodes = task.episodes(seed=s.seed, n=s.episodes)
        prepare(None, task, agent, episodes)
        # 2. the main run, then SR against M (the same episodes; the base policy's proposals in every case)
        results = run_episodes(task, agent, episodes, s.seed, progress=False)
        res: dict[str, Any] = {"summary": _summary(task, results, agent), "episodes": results, "sweep": []}
        if world.is_oracle or kind != "none":
            for m in s.sweep:
                agent_m = _agent(world, s, stop, m)
                res_m = results if m == s.proposals else run_episodes(task, agent_m, episodes, s.seed, progress=False)
                res["sweep"].append({"proposals": m, "summary": _summary(task, res_m, agent_m)})
        spec = str(model_dir) if model_dir else kind
        run_cfg = PlanRunConfig(
            world_model=spec,
            proposals=s.proposals,
            horizon=s.horizon,
            execute=s.execute,
            episodes=s.episodes,
            seed=s.seed,
            stop_threshold=stop["threshold"],
            size=s.size,
            budget=s.budget,
            rollout_steps=s.rollout_steps,
            base_margin=BASE_MARGIN,
        )
        res["fingerprint"] = {**fingerprint(run_cfg, agent, episodes), "stop_calibration": stop}
        res["key"] = key
    finally:
        task.close()
    atomic_write_json(out, res)
    return res


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _cheap_agents(s: PlanSettings, stop: dict[str, float], out: Path) -> dict[str, dict]:
    """The agents without a learned model (the child process's share)."""
    import torch  # noqa: PLC0415 - the child sets its own thread count

    torch.set_num_threads(1)
    return {k: run_agent(k, s, stop, out / f"{k}.json") for k in ("none", "oracle")}


def paired_futures(
    task: ImageNavTask, world: ImaginedWorld, episodes: Any, proposals: int, horizon: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Imagined and real futures of the same base-policy plans from each episode's start.

    Returns imagined `(E, M, L, 3, H, W)` and real `(E, M, L, 3, H, W)` in [0, 1] (real: the simulator
    executes each plan from a snapshot, `OracleWorld`), and the goal images `(H, W, 3)` uint8.
    """
    oracle = OracleWorld()
    oracle.bind(task)
    world.bind(task)
    proposer = TemplateMatchPolicy()
    imagined, real, goals = [], [], []
    for ep in episodes:
        obs = task.reset(ep)
        world.reset(seed * 100_000 + ep.index)
        proposer.reset(task.vocabulary, np.random.default_rng([seed * 100_000 + ep.index, 7]))
        plans = proposer.propose(obs, proposals, horizon)
        imagined.append(np.asarray(world.imagine(obs, plans).float()))
        real.append(np.asarray(oracle.imagine(obs, plans).float()))
        goals.append(ep.goal_image)
    return np.stack(imagined), np.stack(real), goals


def write_strip(path: Path, imagined: np.ndarray, real: np.ndarray, goal: np.ndarray, rows: int = 3) -> None:
    """PNG: per plan, goal | real future (L frames) | imagined future (L frames), 4x upscaled."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - the demo's report already selected the Agg backend

    def u8(x: np.ndarray) -> np.ndarray:  # (L, 3, H, W) [0, 1] -> (H, L*W, 3) uint8
        return (np.clip(x, 0, 1).transpose(2, 0, 3, 1).reshape(x.shape[2], -1, 3) * 255).round().astype(np.uint8)

    h = goal.shape[0]
    sep = np.full((h, 3, 3), 255, np.uint8)
    lines = [np.concatenate([goal, sep, u8(real[i]), sep, u8(imagined[i])], 1) for i in range(min(rows, len(real)))]
    gap = np.full((3, lines[0].shape[1], 3), 255, np.uint8)
    img = np.concatenate([x for line in lines for x in (line, gap)][:-1], 0).repeat(4, 0).repeat(4, 1)
    with atomic_path(path) as tmp:
        plt.imsave(tmp, img, format="png")


def _section(res: dict[str, dict], s: PlanSettings, strip: str | None, plot: str | None) -> str:
    rows = []
    for k in AGENTS:
        if k not in res:
            continue
        sm = res[k]["summary"]
        lo, hi = sm["success_rate_ci95"]
        slo, shi = sm.get("spl_ci95", (float("nan"), float("nan")))
        rows.append(
            f"<tr><td>{html.escape(LABELS[k])}</td><td>{sm['success_rate']:.3f} [{lo:.2f}, {hi:.2f}]</td>"
            f"<td>{sm['spl']:.3f} [{slo:.2f}, {shi:.2f}]</td><td>{sm['n']}</td>"
            f"<td>{sm['imagined_plans_per_episode']:.1f}</td><td>{sm['seconds_per_episode']:.1f}</td></tr>"
        )
    ep_id = next(iter(res.values()))["fingerprint"]["episode_set"]["id"]
    parts = [
        "<h2>Closed loop: ImageNav on held-out scenes</h2>",
        f"<p>{s.episodes} episodes (episode set <code>{html.escape(str(ep_id))}</code>, planning scenes >= 2e9), "
        f"{s.size} px, goals {s.forward_range[0] * 0.25:g}-{s.forward_range[1] * 0.25:g} m away within "
        f"{s.view_turns} turns of the start heading, any final heading; budget {s.budget} actions; "
        f"M = {s.proposals} base-policy proposals of L = {s.horizon} "
        f"actions, k = {s.execute} executed per decision; the demo model samples with {s.rollout_steps} steps. "
        "The same proposals, scorer (SSIM to the goal) and stop rule in every row; the oracle (flagged) "
        "imagines with the simulator itself. 95% intervals: Wilson (SR), bootstrap (SPL).</p>",
        "<table><tr><th>agent</th><th>SR [95%]</th><th>SPL [95%]</th><th>n</th><th>imagined plans / episode</th>"
        f"<th>s / episode</th></tr>{''.join(rows)}</table>",
    ]
    if plot:
        parts.append(f"<img src='{plot}'>")
    if strip:
        parts.append(
            "<p>Same plans, first episode: goal | real future (simulator) | imagined future (demo model)</p>"
            f"<img src='{strip}'>"
        )
    return "\n".join(parts)


def _plot_sweep(res: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for k in AGENTS:
        sweep = res.get(k, {}).get("sweep") or []
        if not sweep:
            continue
        ms = [p["proposals"] for p in sweep]
        sr = [p["summary"]["success_rate"] for p in sweep]
        lo = [p["summary"]["success_rate_ci95"][0] for p in sweep]
        hi = [p["summary"]["success_rate_ci95"][1] for p in sweep]
        line = ax.plot(ms, sr, marker="o", label=LABELS[k])[0]
        ax.fill_between(ms, lo, hi, color=line.get_color(), alpha=0.15)
    if "none" in res:
        ax.axhline(res["none"]["summary"]["success_rate"], color="0.4", ls=":", label=LABELS["none"])
    ax.set_xlabel("M (proposals imagined per decision)")
    ax.set_ylabel("ImageNav SR")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    report._save(fig, path)


def stage_plan(state: Any) -> None:
    """7. closed loop: ImageNav with no world model, the demo's action model and the oracle (see module doc)."""
    cfg = state.cfg
    if not cfg.plan:
        return
    state.metrics["planning"] = state.clock.run("7 closed loop (ImageNav)", _closed_loop, state)


def _closed_loop(state: Any) -> dict[str, Any]:
    s, out = plan_settings(state.cfg), state.out / "planning"
    out.mkdir(parents=True, exist_ok=True)
    model = state.models.get("action") or state.out / "runs" / "action" / "final"
    # 1. the plan, printed up front
    decisions = -(-s.budget // s.execute)
    print(
        f"closed loop: {s.episodes} ImageNav episodes x 3 agents at {s.size} px; M={s.proposals}, L={s.horizon}, "
        f"k={s.execute}, <= {decisions} decisions / episode, {s.rollout_steps} denoising steps; SR vs M at "
        f"{list(s.sweep)}; no-model + oracle agents "
        + ("in a second process" if state.cfg.plan_parallel else "after it, in this process"),
        flush=True,
    )
    # 2. the stop rule at this size, calibrated on training scenes
    stop = calibrated_stop(s, out / "stop_calibration.json")
    # 3. none + oracle in a child process, the demo model here
    if state.cfg.plan_parallel:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            cheap = pool.submit(_cheap_agents, s, stop, out)
            res = {"action": run_agent("action", s, stop, out / "action.json", Path(model))}
            res.update(cheap.result())
    else:
        res = {"action": run_agent("action", s, stop, out / "action.json", Path(model))}
        res.update({k: run_agent(k, s, stop, out / f"{k}.json") for k in ("none", "oracle")})
    # 4. a strip of real vs imagined futures and the SR-vs-M plot
    assets = state.out / "assets"
    task = imagenav_task(s)
    try:
        eps = task.episodes(seed=s.seed, n=1)
        imag, real, goals = paired_futures(task, make_world("action", s, Path(model)), eps, 3, s.horizon, s.seed)
    finally:
        task.close()
    write_strip(assets / "plan_strip.png", imag[0], real[0], goals[0])
    _plot_sweep(res, assets / "plan_sr_vs_m.png")
    state.sections.append(_section(res, s, "assets/plan_strip.png", "assets/plan_sr_vs_m.png"))
    return {
        "task": "imagenav",
        "settings": _jsonable(asdict(s)),
        "stop_calibration": stop,
        "agents": {
            k: {
                "summary": r["summary"],
                "sweep": r["sweep"],
                "fingerprint": r["fingerprint"],
                "episodes": [
                    {f: e[f] for f in ("episode", "scene_seed", "success", "spl", "actions", "stopped")}
                    for e in r["episodes"]
                ],
            }
            for k, r in res.items()
        },
        "episode_set": res["action"]["fingerprint"]["episode_set"],
    }
