"""`actwm demo`'s pipeline: an ordered list of stages over one shared `DemoState`.

Default stages (`DEFAULT_STAGES`):

1. simulate a `nav` dataset in pybullet: training scenes and disjoint held-out scenes (LeRobot v3.0);
2. passive stage: a tiny real-backbone video model learns to generate video from action-free clips;
3. action stage: EgoWM fine-tuning from the passive model (action encoder at `action_lr_mult` x the lr);
4. from-scratch comparison: actions from the first step, for the same total number of steps (it trains
   in a second process on the second core while stages 2-3 run);
5. roll out held-out clips under their true actions and under shuffled actions (autoregressive chunks), with
   classifier-free guidance on actions and again without;
6. score the rollouts in memory with `actwm.eval.engine.evaluate` (PSNR, SSIM, SCS with the simulator's
   segmentation): the code `actwm eval` runs on the written folders;
7. closed loop (`actwm.demo.planning_stage`, skipped with `plan.enabled=False` / `--no-plan`): ImageNav on held-out
   planning scenes with no world model, the demo's action model and the oracle (same proposals);
8. write `DIR/metrics.json` and `DIR/report.html` (side-by-side videos, metric-vs-horizon plots).

Adding a stage: write `def my_stage(state: DemoState) -> None` that reads what earlier stages left in
`state` (`data`, `models`, `clips`, `summary`), times its work with `state.clock.run(...)`, and puts its
results in `state.metrics[...]` (merged into metrics.json) and HTML in `state.sections` (added to
report.html); then run `run_demo(cfg, stages=insert_stage(DEFAULT_STAGES, "report", ("plan", my_stage)))`
or insert it into `DEFAULT_STAGES`. Each stage should skip work whose output exists (resumable).
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from actwm.demo import report
from actwm.demo.config import DemoConfig
from actwm.demo.planning_stage import stage_plan
from actwm.demo.stages import (
    _scratch_in_child,
    eval_clips,
    probe_speed,
    round_or_none,
    score_copy_first_frame,
    score_rollouts,
    simulate_data,
    summarise,
    train_stage,
    write_rollouts,
)
from actwm.io import atomic_write_json, read_json

__all__ = ["DemoState", "StageClock", "DEFAULT_STAGES", "announce_demo_time", "insert_stage", "run_demo"]


class StageClock:
    """Wall time and peak resident memory per stage, written to `DIR/timings.json`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict[str, float]] = read_json(path)["stages"] if path.is_file() else {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        prev = self.stages.get(name, {})  # a resumed stage adds to the time it already spent
        self.stages[name] = {
            "seconds": round(prev.get("seconds", 0.0) + time.perf_counter() - t0, 2),
            "peak_rss_mb": round(max(peak_mb, prev.get("peak_rss_mb", 0.0)), 1),
        }
        self._write()
        return result

    def record(self, name: str, seconds: float, peak_rss_mb: float) -> None:
        """A stage measured elsewhere (a child process); not counted in the wall-clock total."""
        prev = self.stages.get(name, {})
        self.stages[name] = {
            "seconds": round(prev.get("seconds", 0.0) + seconds, 2),
            "peak_rss_mb": round(max(peak_rss_mb, prev.get("peak_rss_mb", 0.0)), 1),
            "parallel": True,
        }
        self._write()

    @property
    def wall_seconds(self) -> float:
        """Wall time of the stages so far (stages measured in a parallel process not counted)."""
        return sum(s["seconds"] for s in self.stages.values() if not s.get("parallel"))

    def _write(self) -> None:
        atomic_write_json(self.path, {"stages": self.stages, "total_seconds": round(self.wall_seconds, 2)})


@dataclass
class DemoState:
    """What the stages share. `metrics` and `sections` collect extra results for metrics.json / report.html."""

    cfg: DemoConfig
    out: Path
    clock: StageClock
    data: Path | None = None
    models: dict[str, Path] = field(default_factory=dict)
    clips: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None


Stage = Callable[[DemoState], None]


def stage_simulate(state: DemoState) -> None:
    """1. the dataset."""
    state.data = state.clock.run("1 simulate", simulate_data, state.cfg, state.out)


def stage_train(state: DemoState) -> None:
    """2-4. passive then action training here; from scratch in a second process at the same time."""
    cfg, out, clock, train = state.cfg, state.out, state.clock, state.cfg.train
    runs = out / "runs"
    # 2a. the passive stage's first steps, timed alone (before the second process starts): the demo's time
    rate = clock.run(
        "2 passive stage (first steps, timed)",
        probe_speed,
        cfg,
        state.data,
        runs / "passive",
        steps=train.passive_steps,
        passive=True,
        init_from=None,
    )
    announce_demo_time(cfg, rate, clock.wall_seconds)
    pool = scratch = None
    if train.scratch:  # same total steps as passive + action, with actions from the start; runs on the other core
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        scratch = pool.submit(
            _scratch_in_child, cfg, state.data, runs / "scratch", train.passive_steps + train.action_steps
        )
        print("from-scratch comparison training in a second process", flush=True)

    def stage(name: str, run: str, steps: int, passive: bool, init_from: Path | None) -> Path:
        return clock.run(
            name, train_stage, cfg, state.data, runs / run, steps=steps, passive=passive, init_from=init_from
        )

    passive = stage("2 passive stage", "passive", train.passive_steps, True, None)  # resumes after the timed steps
    state.models["action"] = stage("3 action stage", "action", train.action_steps, False, passive)
    if scratch is not None:
        final, seconds, peak = clock.run("4 from scratch (wait)", scratch.result)
        pool.shutdown()
        clock.record("4 from scratch (parallel process)", seconds, peak)
        state.models["scratch"] = final


#: Calibration of `announce_demo_time` (seconds per step as multiples of the first passive steps' median timed
#: alone, `probe_speed`: 0.218-0.232 s on the reference machine, data loading warming up), from full demos
#: there: a passive step then costs 0.84-1.28x with the from-scratch process sharing the cores (0.188 s and
#: 0.288 s in two runs, on a quiet and a slower day), a compiled action step 0.63-0.67x (0.141 / 0.150 s;
#: 0.68x alone, 0.154 s); the work after training, in probe-step equivalents at the default sizes (one model's
#: guided and unguided rollouts and scores 127, the closed-loop stage 482, the rest 22). A third run, on a 2-core
#: AMD EPYC with AVX512-BF16 and no AMX: probe 0.106 s, passive steps 1.07x, compiled action steps 0.74x; it
#: announced 6-7 min and took 7 min 18 s, so the compiled range's top is 0.75x with the second process too.
PASSIVE_STEP = {True: (0.8, 1.3), False: (0.8, 1.0)}  # keyed by whether from scratch trains alongside
COMPILED_STEP = {True: (0.6, 0.75), False: (0.6, 0.75)}
EVAL_STEPS_PER_MODEL, PLAN_STEPS, OTHER_STEPS = 127.0, 482.0, 22.0


def announce_demo_time(cfg: DemoConfig, seconds_per_step: float | None, elapsed: float = 0.0) -> str | None:
    """Say up front how long the whole demo will take on THIS machine, from the speed of the passive stage's
    first steps timed alone (`seconds_per_step`) and the `elapsed` seconds so far. Returns the line printed."""
    train, ref = cfg.train, DemoConfig()
    if not seconds_per_step:
        return None
    passive = PASSIVE_STEP[train.scratch]
    action = COMPILED_STEP[train.scratch] if train.compile else passive
    training = [seconds_per_step * (train.passive_steps * p + train.action_steps * a) for p, a in zip(passive, action)]
    evals = EVAL_STEPS_PER_MODEL * (1 + train.scratch) * (cfg.eval.clips * cfg.eval.sample_steps)
    evals /= ref.eval.clips * ref.eval.sample_steps * (1 if cfg.guidance.scale != 1.0 else 2)
    plan = PLAN_STEPS * cfg.plan.episodes * cfg.plan.budget / (ref.plan.episodes * ref.plan.budget)
    rest = seconds_per_step * (evals + OTHER_STEPS + plan * cfg.plan.enabled)
    low, high = (elapsed + t + rest for t in training)
    line = (
        f"this machine trains at {seconds_per_step:.3f} s/step (first passive steps): the demo will take about "
        f"{_duration(low, high)} in all, {_duration(*training)} of it training"
        + (" (from scratch trains alongside on the other core)" if train.scratch else "")
    )
    if low > 20 * 60:
        line += "; for less: --no-scratch, --no-plan, or --quick (a smoke run of every stage)"
    print(line, flush=True)
    return line


def _duration(low: float, high: float) -> str:
    """Seconds `low`..`high` as "14-19 min" (or "40-55 s" under two minutes)."""
    scale, unit = (1, "s") if high < 120 else (60, "min")
    lo, hi = round(low / scale), round(high / scale)
    return f"{lo} {unit}" if lo == hi else f"{lo}-{hi} {unit}"


def _rollout_and_score(state: DemoState, name: str, model_dir: Path, out: Path, guidance: float) -> dict[str, Any]:
    """Stages 5-6 for one model and guidance: `{true, shuffled, true_at, shuffled_at, psnr_gap_db, guidance}`."""
    cfg, clock = state.cfg, state.clock
    videos = clock.run(f"5 rollouts ({name})", write_rollouts, cfg, model_dir, state.clips, out, guidance)
    res = summarise(clock.run(f"6 evaluate ({name})", score_rollouts, cfg, state.clips, videos, out))
    res["psnr_gap_db"] = {
        str(h): round_or_none(res["true"]["psnr"][str(h)] - res["shuffled"]["psnr"][str(h)]) for h in cfg.eval.horizons
    }
    res["guidance"] = guidance
    return res


def stage_evaluate(state: DemoState) -> None:
    """5-6. held-out clips, rollouts of every model (guided and, for the record, unguided), scores."""
    cfg = state.cfg
    state.clips = eval_clips(cfg, state.data)
    state.metrics["copy_first_frame"] = state.clock.run(  # the no-model baseline on the same clips and metrics
        "6 evaluate (copy frame 0)", score_copy_first_frame, cfg, state.clips, state.out / "rollouts"
    )
    for name, model_dir in state.models.items():
        rollouts = state.out / "rollouts"
        state.summary[name] = _rollout_and_score(state, name, model_dir, rollouts / name, cfg.guidance.scale)
        if cfg.guidance.scale != 1.0:  # the same model without guidance, for the record
            state.summary[name]["unguided"] = _rollout_and_score(
                state, f"{name}, guidance 1", model_dir, rollouts / f"{name}_unguided", 1.0
            )


def stage_report(state: DemoState) -> None:
    """8. metrics.json and report.html."""
    state.result = state.clock.run("8 report", _report, state)


def _report(state: DemoState) -> dict[str, Any]:
    cfg, out, summary, clips = state.cfg, state.out, state.summary, state.clips
    assets = out / "assets"
    report.plot_comparison(summary, assets / "metrics.png", cfg.eval.horizons)
    runs = {n: out / "runs" / n for n in ("passive", "action", "scratch")}
    report.plot_losses(runs, assets / "losses.png", passive_steps=cfg.train.passive_steps)
    gifs = []
    for clip in clips[: min(6, len(clips))]:
        rel = f"assets/{clip['name']}.gif"
        report.side_by_side_gif(out / "rollouts" / "action", clip["name"], out / rel)
        gifs.append(rel)
    metrics = {
        "true": summary["action"]["true"],
        "shuffled": summary["action"]["shuffled"],
        "psnr_gap_db": summary["action"]["psnr_gap_db"],
        **summary,
        **state.metrics,
        "guidance": cfg.guidance.scale,
        "horizons": list(cfg.eval.horizons),
        "horizon_definition": "metric at horizon h = mean over predicted frames 1..h (frame 0 is the given frame); "
        "'*_at' keys hold the value at frame h",
        "ssim_definition": "SSIM of Wang et al. 2004 as scikit-image computes it: Gaussian window 11, sigma 1.5, "
        "population covariance, data range 1, mean over the valid region (no padded border) and the channels",
        "model": cfg.model.preset,
        "held_out": {
            "clips": len(clips),
            "scenes": cfg.data.test_episodes,
            "shuffle": "clip i gets the actions of clip (i + n//2) mod n",
        },
        "config": cfg.to_dict(),
        "timings": json.loads(json.dumps(state.clock.stages)),  # stages before the report
    }
    atomic_write_json(out / "metrics.json", metrics)
    report.write_report(out, metrics, gifs, state.sections)
    return metrics


DEFAULT_STAGES: list[tuple[str, Stage]] = [
    ("simulate", stage_simulate),
    ("train", stage_train),
    ("evaluate", stage_evaluate),
    ("plan", stage_plan),
    ("report", stage_report),
]


def insert_stage(stages: list[tuple[str, Stage]], before: str, stage: tuple[str, Stage]) -> list[tuple[str, Stage]]:
    """A copy of `stages` with `stage` inserted before the one named `before`."""
    names = [n for n, _ in stages]
    if before not in names:
        raise ValueError(f"insert_stage: no stage named {before!r}; stages: {names}")
    i = names.index(before)
    return [*stages[:i], stage, *stages[i:]]


def _scheduling(cfg: DemoConfig) -> dict[str, Any]:
    """The settings that change no result: where the directory lives (it may have been moved) and the threads."""
    return {"out": cfg.out, "threads": cfg.threads}


def run_demo(cfg: DemoConfig, stages: list[tuple[str, Stage]] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage in order; returns the metrics written to `DIR/metrics.json`."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "demo_config.json"
    if saved.is_file() and DemoConfig.from_dict(read_json(saved)).updated(_scheduling(cfg)) != cfg:  # flat: migrated
        raise ValueError(f"{out} holds a demo with other settings ({saved}); use another --out or delete it")
    atomic_write_json(saved, cfg.to_dict())
    state = DemoState(cfg=cfg, out=out, clock=StageClock(out / "timings.json"))
    for _name, stage in stages or DEFAULT_STAGES:
        stage(state)
    if state.result is None:
        raise ValueError("run_demo: the stages wrote no report (the 'report' stage must run last)")
    return state.result
