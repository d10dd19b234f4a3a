"""The demo's closed-loop stage: ImageNav on held-out scenes with no world model, the demo's model, the oracle.

All three agents use the same base-policy proposals (ImageNav's base policy `PoseSearchPolicy`, as `actwm plan`
uses it; `BASE_POLICY` names it in the results), the same scorer and the same stop rule; only the world model
differs, and it revises the base policy's own plan only when an imagined alternative scores clearly better
(`DemoConfig.plan.planner.base_margin`). Tasks run at the demo model's image size with the demo's renders
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from actwm.demo import report
from actwm.demo.config import DemoConfig
from actwm.io import atomic_path, atomic_write_json, read_json
from actwm.models.world_model import WorldModel
from actwm.planning.calibrate import best_threshold, stop_samples
from actwm.planning.interface import ImaginedWorld
from actwm.planning.loop import Agent
from actwm.planning.policy import PoseSearchPolicy, TemplateMatchPolicy
from actwm.planning.runner import PlanRunConfig, _summary, fingerprint, prepare, run_episodes
from actwm.planning.scorers import GoalSimilarity, SimilarityStop
from actwm.planning.tasks import ImageNavConfig, ImageNavTask
from actwm.planning.worlds import CheckpointWorld, NoWorld, OracleWorld
from actwm.rollout.rollout import RolloutConfig
from actwm.sim.nav import NavConfig

__all__ = ["stage_plan", "make_world", "imagenav_task", "calibrated_stop", "run_agent", "paired_futures"]

AGENTS = ("none", "action", "oracle")
LABELS = {"none": "no world model (base policy)", "action": "demo model (EgoWM)", "oracle": "ORACLE (simulator)"}


# The agents' base policy: the pose search with only its hypotheses' paths as alternatives (`wide=False`: at M = 4
# the wide variant's macros and random plans would crowd them out; measured on the demo's episodes with it).
BASE_POLICY = "PoseSearchPolicy(wide=False)"


def imagenav_task(cfg: DemoConfig) -> ImageNavTask:
    """ImageNav at the demo's size with the demo's (supersampled) renders."""
    return ImageNavTask(
        ImageNavConfig(
            size=cfg.data.size,
            budget=cfg.plan.budget,
            forward_range=cfg.plan.forward_range,
            view_turns=cfg.plan.view_turns,
            nav=NavConfig(supersample=cfg.data.supersample),
        )
    )


def calibrated_stop(cfg: DemoConfig, path: Path) -> dict[str, float]:
    """NCC stop threshold (<= 5% false stops) and stay floor (balanced accuracy) at this size; cached in `path`."""
    size, supersample, scenes = cfg.data.size, cfg.data.supersample, cfg.plan.calib_scenes
    key = {"size": size, "supersample": supersample, "scenes": scenes, "seed": cfg.seed}
    if path.is_file() and read_json(path).get("key") == key:
        return read_json(path)
    scorer = GoalSimilarity("ncc")
    near, far = stop_samples(scorer, scenes=scenes, size=size, seed=cfg.seed, supersample=supersample)
    threshold, recall, false_stop = best_threshold(near, far)
    cands = np.unique(np.concatenate([near, far]))
    balanced = [((near >= t).mean() + (far < t).mean()) / 2 for t in cands]
    floor = float(min(cands[int(np.argmax(balanced))], threshold))
    res = {"key": key, "metric": "ncc", "threshold": threshold, "stay_floor": floor, "recall": recall}
    res.update(false_stop_rate=false_stop, near=len(near), far=len(far), training_scenes=[0, scenes - 1])
    atomic_write_json(path, res)
    return res


def make_world(kind: str, cfg: DemoConfig, model_dir: Path | None = None) -> ImaginedWorld:
    """ "none", "oracle" or a checkpoint (the demo's rollout settings; agent actions re-timed to its frame rate)."""
    if kind == "none":
        return NoWorld()
    if kind == "oracle":
        return OracleWorld()
    if model_dir is None:
        raise ValueError(f"closed-loop stage: world model {kind!r} needs a checkpoint directory")
    g = cfg.guidance
    interval = g.interval if g.scale != 1.0 else None
    rcfg = RolloutConfig(steps=cfg.plan.rollout_steps, seed=cfg.seed, guidance=g.scale, guidance_interval=interval)
    wm = WorldModel.load(model_dir)
    return CheckpointWorld(wm, rcfg, frame_step=cfg.data.frame_step, seed=cfg.seed, source=str(model_dir))


def _agent(world: ImaginedWorld, cfg: DemoConfig, stop: dict[str, float], proposals: int) -> Agent:
    rule = SimilarityStop(GoalSimilarity("ncc"), stop["threshold"], stop["stay_floor"])
    planner = replace(cfg.plan.planner, proposals=proposals)
    policy = PoseSearchPolicy(nav=NavConfig(supersample=cfg.data.supersample), wide=False)
    return Agent(world, policy, GoalSimilarity("ssim", "last"), rule, planner)


def agent_settings(cfg: DemoConfig) -> dict[str, Any]:
    """The nested settings an agent's results depend on (its results' key and fingerprint): the demo config
    less what only schedules the work (output, threads, the stage switch, the second process)."""
    settings = cfg.to_dict()
    for key in ("out", "threads"):
        del settings[key]
    for key in ("enabled", "parallel"):
        del settings["plan"][key]
    return {**settings, "base_policy": BASE_POLICY}


def run_agent(kind: str, cfg: DemoConfig, stop: dict[str, float], out: Path, model_dir: Path | None = None) -> dict:
    """One agent on the episode set (main M, then the sweep); written to `out` (skipped when it exists)."""
    settings, plan = agent_settings(cfg), cfg.plan
    key = {"settings": settings, "stop": stop, "model": str(model_dir) if model_dir else None}
    if out.is_file() and read_json(out).get("key") == key:
        print(f"closed-loop results exist: {out}", flush=True)
        return read_json(out)
    # 1. build and check everything before the first episode
    task = imagenav_task(cfg)
    try:
        world = make_world(kind, cfg, model_dir)
        agent = _agent(world, cfg, stop, plan.planner.proposals)
        episodes = task.episodes(seed=cfg.seed, n=plan.episodes)
        prepare(None, task, agent, episodes)
        # 2. the main run, then SR against M (the same episodes; the base policy's proposals in every case)
        results = run_episodes(task, agent, episodes, cfg.seed, progress=False)
        res: dict[str, Any] = {"summary": _summary(task, results, agent), "episodes": results, "sweep": []}
        if world.is_oracle or kind != "none":
            for m in plan.sweep:
                agent_m = _agent(world, cfg, stop, m)
                same = m == plan.planner.proposals
                res_m = results if same else run_episodes(task, agent_m, episodes, cfg.seed, progress=False)
                res["sweep"].append({"proposals": m, "summary": _summary(task, res_m, agent_m)})
        # 3. the fingerprint: the run as `actwm plan` records it, the stop calibration and the demo's settings
        run_cfg = PlanRunConfig(
            world_model=str(model_dir) if model_dir else kind,
            planner=plan.planner,
            episodes=plan.episodes,
            seed=cfg.seed,
            stop_threshold=stop["threshold"],
            size=cfg.data.size,
            budget=plan.budget,
            rollout_steps=plan.rollout_steps,
        )
        res["fingerprint"] = {**fingerprint(run_cfg, agent, episodes), "stop_calibration": stop, "demo": settings}
        res["key"] = key
    finally:
        task.close()
    atomic_write_json(out, res)
    return res


def _cheap_agents(cfg: DemoConfig, stop: dict[str, float], out: Path) -> dict[str, dict]:
    """The agents without a learned model (the child process's share)."""
    import torch  # noqa: PLC0415 - the child sets its own thread count

    torch.set_num_threads(1)
    return {k: run_agent(k, cfg, stop, out / f"{k}.json") for k in ("none", "oracle")}


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
    proposer = TemplateMatchPolicy()  # diverse plans from the start (the pose search begins with its scan turn alone)
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


def _section(res: dict[str, dict], cfg: DemoConfig, strip: str | None, plot: str | None) -> str:
    p, planner = cfg.plan, cfg.plan.planner
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
        f"<p>{p.episodes} episodes (episode set <code>{html.escape(str(ep_id))}</code>, planning scenes >= 2e9), "
        f"{cfg.data.size} px, goals {p.forward_range[0] * 0.25:g}-{p.forward_range[1] * 0.25:g} m away within "
        f"{p.view_turns} turns of the start heading, any final heading; budget {p.budget} actions; "
        f"M = {planner.proposals} base-policy proposals of L = {planner.horizon} "
        f"actions, k = {planner.execute} executed per decision; the demo model samples with {p.rollout_steps} steps. "
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
    if not state.cfg.plan.enabled:
        return
    state.metrics["planning"] = state.clock.run("7 closed loop (ImageNav)", _closed_loop, state)


def _closed_loop(state: Any) -> dict[str, Any]:
    cfg, out = state.cfg, state.out / "planning"
    p, planner = cfg.plan, cfg.plan.planner
    out.mkdir(parents=True, exist_ok=True)
    model = state.models.get("action") or state.out / "runs" / "action" / "final"
    # 1. the plan, printed up front
    decisions = -(-p.budget // planner.execute)
    print(
        f"closed loop: {p.episodes} ImageNav episodes x 3 agents at {cfg.data.size} px; M={planner.proposals}, "
        f"L={planner.horizon}, k={planner.execute}, <= {decisions} decisions / episode, {p.rollout_steps} denoising "
        f"steps; SR vs M at {list(p.sweep)}; no-model + oracle agents "
        + ("in a second process" if p.parallel else "after it, in this process"),
        flush=True,
    )
    # 2. the stop rule at this size, calibrated on training scenes
    stop = calibrated_stop(cfg, out / "stop_calibration.json")
    # 3. none + oracle in a child process, the demo model here
    if p.parallel:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            cheap = pool.submit(_cheap_agents, cfg, stop, out)
            res = {"action": run_agent("action", cfg, stop, out / "action.json", Path(model))}
            res.update(cheap.result())
    else:
        res = {"action": run_agent("action", cfg, stop, out / "action.json", Path(model))}
        res.update({k: run_agent(k, cfg, stop, out / f"{k}.json") for k in ("none", "oracle")})
    # 4. a strip of real vs imagined futures and the SR-vs-M plot
    assets = state.out / "assets"
    task = imagenav_task(cfg)
    try:
        eps = task.episodes(seed=cfg.seed, n=1)
        world = make_world("action", cfg, Path(model))
        imag, real, goals = paired_futures(task, world, eps, 3, planner.horizon, cfg.seed)
    finally:
        task.close()
    write_strip(assets / "plan_strip.png", imag[0], real[0], goals[0])
    _plot_sweep(res, assets / "plan_sr_vs_m.png")
    state.sections.append(_section(res, cfg, "assets/plan_strip.png", "assets/plan_sr_vs_m.png"))
    return {
        "task": "imagenav",
        "settings": cfg.to_dict()["plan"],
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
