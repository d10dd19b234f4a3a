"""`actwm demo`: the whole loop on the embedded default, on a laptop CPU.

1. simulate a `nav` dataset in pybullet: training scenes and disjoint held-out scenes (LeRobot v3.0);
2. passive stage: a tiny real-backbone video model learns to generate video from action-free clips;
3. action stage: EgoWM fine-tuning from the passive model (action encoder at `action_lr_mult` x the lr);
4. from-scratch comparison: actions from the first step, for the same total number of steps (it trains
   in a second process on the second core while stages 2-3 run);
5. roll out held-out clips under their true actions and under shuffled actions (autoregressive chunks), with
   classifier-free guidance on actions and again without;
6. score the rollouts from disk with `actwm eval` (PSNR, SSIM, SCS with the simulator's segmentation);
7. write `DIR/metrics.json` and `DIR/report.html` (side-by-side videos, metric-vs-horizon plots).

Each stage skips what is already done, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import argparse
import html
import json
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actwm.io import atomic_write_json, atomic_write_text, read_json

DEFAULT_OUT = "actwm_out/demo"


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo (defaults fit 15 minutes on 2 CPU cores; `quick()` about 3)."""

    out: str = DEFAULT_OUT
    size: int = 32
    train_episodes: int = 48
    test_episodes: int = 8
    episode_frames: int = 64
    robot_speed: float = 0.08
    robot_turn_rate: float = 0.1
    # Anti-aliased renders (3x3 supersampling): at 32 px, plain renders alias and shimmer as the robot moves,
    # so even the next frame is hard to predict (copying frame 0 scored 14.7 dB at t+1; 17.0 dB supersampled).
    supersample: int = 3
    # Wan 2.1 I2V's channel-concat first frame: lower loss and +0.6 dB over frame-0 replacement (wan2.1-tiny)
    # at equal steps in our runs.
    model: str = "wan2.1-i2v-tiny"
    spatial: int = 2
    layers: int = 2
    heads: int = 6
    features: str = "sincos"
    hidden_dim: int = 128
    # Sine-cosine action features at angular frequencies 1..max_freq per (normalised) unit; EgoWM-style 100 makes
    # hash-like features of unit-scale actions, 10 varies smoothly over the range the robot covers.
    max_freq: float = 10.0
    passive_steps: int = 600
    action_steps: int = 3200
    scratch: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    # EgoWM trains the action module at 10x a 1e-5 base lr. At this demo's 1e-3 base lr, 10x (1e-2) collapsed
    # the tiny encoder to a constant (embedding std across actions -> 0, no action effect); 3x did not.
    action_lr_mult: float = 3.0
    # Flow-matching training times ~ sigmoid(N(logit_mean, 1)). Actions decide the coarse layout, which is set at
    # high noise: logit_mean 1.5 (mostly t > 0.5) made the tiny model pick up actions at all; 2.0 widened the
    # gap further (2.5 did not).
    logit_mean: float = 2.0
    # 10% of action-stage clips train with the action embedding zeroed (the passive stage's input), so the model
    # keeps the action-free prediction that classifier-free guidance on actions extrapolates away from.
    action_dropout: float = 0.1
    # Rollouts use `uncond + guidance * (cond - uncond)` on actions at flow times t in `guidance_interval`
    # (where the layout forms); metrics.json also reports guidance 1.
    guidance: float = 2.0
    guidance_interval: tuple[float, float] = (0.3, 1.0)
    # "auto": bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX; about 15% faster training
    # here, same gap), float32 elsewhere (emulated bf16 would be slower); or "bf16" / "no".
    mixed_precision: str = "auto"
    horizon: int = 8
    eval_frames: int = 17
    eval_clips: int = 24
    sample_steps: int = 10
    horizons: tuple[int, ...] = (2, 4, 8, 16)
    scs: bool = True
    seed: int = 0
    threads: int = 1

    @classmethod
    def quick(cls, **kw: Any) -> "DemoConfig":
        base = dict(
            train_episodes=12,
            test_episodes=3,
            episode_frames=40,
            passive_steps=150,
            action_steps=250,
            scratch=False,
            eval_clips=6,
            sample_steps=6,
        )
        return cls(**{**base, **kw})

    def __post_init__(self) -> None:
        if self.eval_frames < 2 or self.episode_frames < self.eval_frames:
            raise ValueError("DemoConfig: need 2 <= eval_frames <= episode_frames")
        if max(self.horizons) > self.eval_frames - 1:
            raise ValueError(f"DemoConfig.horizons {self.horizons} exceed eval_frames - 1 = {self.eval_frames - 1}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(
                f"DemoConfig.mixed_precision: must be 'auto', 'bf16' or 'no', got {self.mixed_precision!r}"
            )
        if not 0.0 <= self.guidance_interval[0] < self.guidance_interval[1]:
            raise ValueError(
                f"DemoConfig.guidance_interval: must be (lo, hi) with 0 <= lo < hi, got {self.guidance_interval}"
            )
        if self.guidance < 1.0:
            raise ValueError(f"DemoConfig.guidance: must be >= 1 (1 = no guidance), got {self.guidance}")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ValueError(f"DemoConfig.action_dropout: must be in [0, 1), got {self.action_dropout}")
        if self.guidance > 1.0 and self.action_dropout == 0.0:
            raise ValueError(
                "DemoConfig.guidance > 1 needs action_dropout > 0 (the action-free prediction it extrapolates from)"
            )


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

    def _write(self) -> None:
        wall = sum(s["seconds"] for s in self.stages.values() if not s.get("parallel"))
        atomic_write_json(self.path, {"stages": self.stages, "total_seconds": round(wall, 2)})


# ------------------------------------------------------------------------------------------ stages


def simulate_data(cfg: DemoConfig, out: Path) -> Path:
    """Stage 1: `nav` episodes; training scenes use seeds 0.., held-out scenes 1_000_000.. (disjoint)."""
    from actwm.data.convert import simulate

    data = out / "data"
    if (data / "meta" / "info.json").is_file():
        print(f"dataset exists: {data}")
        return data
    simulate(
        "nav",
        data,
        episodes=cfg.train_episodes,
        frames=cfg.episode_frames,
        size=cfg.size,
        seed=cfg.seed,
        test_episodes=cfg.test_episodes,
        policy_kwargs={"speed": cfg.robot_speed, "turn_rate": cfg.robot_turn_rate},
        env_kwargs={"supersample": cfg.supersample} if cfg.supersample != 1 else None,
    )
    return data


def _model_overrides(cfg: DemoConfig) -> dict[str, Any]:
    """The demo's tiny backbone: the preset's class, a pixel codec with spatial factor `cfg.spatial`, and a
    hidden width no smaller than a patch token (wider tokens make a low-rank bottleneck)."""
    from actwm.models import svd, wan
    from actwm.models.world_model import get_preset

    base = get_preset(cfg.model)
    k = base.codec["temporal"]
    channels = 3 * cfg.spatial * cfg.spatial * k
    overrides: dict[str, Any] = {
        "hidden_dim": cfg.hidden_dim,
        "features": cfg.features,
        "max_freq": cfg.max_freq,
        "codec": {"kind": "pixel", "spatial": cfg.spatial, "temporal": k},
    }
    if base.family == "svd":  # EDM's own defaults suit a pixel-space tiny model better than SVD's high-noise ones
        overrides["objective"] = {"p_mean": -1.2, "p_std": 1.2, "sigma_max": 80.0}
        overrides["backbone_config"] = svd.tiny_config(channels)
    elif base.family == "wan":
        overrides["objective"] = {"shift": 1.0, "logit_mean": cfg.logit_mean}
        concat = base.backbone_config["in_channels"] != base.backbone_config["out_channels"]  # Wan 2.1 I2V style
        overrides["backbone_config"] = dict(
            wan.tiny_config(channels, concat_mask=k if concat else 0),
            num_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            attention_head_dim=32,
            ffn_dim=64 * cfg.heads,
        )
    else:
        raise ValueError(f"DemoConfig.model: the demo supports svd and wan tiny presets, got {cfg.model!r}")
    return overrides


def train_stage(
    cfg: DemoConfig, data: Path, run: Path, *, steps: int, passive: bool, init_from: Path | None, progress: bool = True
) -> Path:
    """Stages 2-4: one training run (resumes if interrupted; skipped when finished)."""
    from actwm.train.config import TrainConfig
    from actwm.train.trainer import train

    final = run / "final"
    if (final / "model.safetensors").is_file():
        print(f"finished run exists: {final}")
        return final
    tcfg = TrainConfig.preset(
        "tiny-cpu",
        data=str(data),
        out=str(run),
        model=cfg.model,
        model_overrides=_model_overrides(cfg),
        init_from=str(init_from) if init_from else None,
        steps=steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        action_lr_mult=cfg.action_lr_mult,
        action_dropout=cfg.action_dropout,
        mixed_precision=resolve_precision(cfg.mixed_precision),
        passive=passive,
        horizon=cfg.horizon,
        size=cfg.size,
        action_mode="cumulative",
        seed=cfg.seed,
        checkpoint_every=max(steps // 3, 1),
        resume=True,
        threads=cfg.threads,
        warmup_steps=min(50, steps // 10),
    )
    return train(tcfg, progress=progress).final_dir


def resolve_precision(setting: str) -> str:
    """`auto` -> "bf16" on a CPU with native bf16 matmuls (AVX512-BF16 or AMX), else "no"."""
    if setting != "auto":
        return setting
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # private helpers; assume no native bf16 if a torch build lacks them
        native = False
    return "bf16" if native else "no"


def _scratch_in_child(cfg: DemoConfig, data: Path, run: Path, steps: int) -> tuple[Path, float, float]:
    """Stage 4 in a child process: (final dir, seconds, peak RSS MB of the child)."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    final = train_stage(cfg, data, run, steps=steps, passive=False, init_from=None, progress=False)
    return final, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eval_clips(cfg: DemoConfig, data: Path) -> list[dict[str, Any]]:
    """Held-out clips of `eval_frames` frames: raw frames, raw actions, segmentation and static ids."""
    from actwm.data.lerobot import LeRobotDataset

    store = LeRobotDataset(data)
    test = [i for i in range(len(store)) if store.episode_meta(i).get("split") == "test"]
    if not test:
        raise ValueError(f"{data}: no held-out (split=test) episodes to evaluate on")
    clips = []
    per_episode = -(-cfg.eval_clips // len(test))
    for i in test:
        ep = store.episode(i)
        starts = range(0, len(ep) - cfg.eval_frames + 1, cfg.eval_frames - 1)
        seg = ep.extras.get("segmentation")
        static = set(int(i) for i in ep.meta.get("static_ids", []))
        for s in [s for s in starts if _has_structure(seg, static, s)][:per_episode]:
            sl = slice(s, s + cfg.eval_frames)
            clips.append(
                {
                    "name": f"ep{i:03d}_t{s:03d}",
                    "frames": ep.frames[sl],
                    "actions": ep.actions[sl],
                    "segmentation": ep.extras.get("segmentation", None)[sl] if "segmentation" in ep.extras else None,
                    "static_ids": ep.meta.get("static_ids", []),
                }
            )
    return clips[: cfg.eval_clips]


def _has_structure(seg: np.ndarray | None, static: set[int], start: int) -> bool:
    """True when frame `start` shows a static structure that SCS can track (same rule as `actwm eval`)."""
    from actwm.eval.prompts import structures_from_segmentation

    if seg is None:
        return True
    return len(structures_from_segmentation(seg[start], static_ids=sorted(static))[1]) > 0


def shuffled_order(n: int) -> list[int]:
    """A derangement: clip i gets the actions of clip (i + n//2) mod n (another episode where possible)."""
    shift = max(1, n // 2)
    return [(i + shift) % n for i in range(n)]


def write_rollouts(
    cfg: DemoConfig, model_dir: Path, clips: list[dict[str, Any]], out: Path, guidance: float | None = None
) -> Path:
    """Stage 5: `out/gt/<clip>/`, `out/true/<clip>/`, `out/shuffled/<clip>/` PNG folders (+ SCS side files).

    `guidance`: classifier-free guidance on actions (default `cfg.guidance`; 1 = none).
    """
    guidance = cfg.guidance if guidance is None else guidance
    from actwm.models.world_model import WorldModel
    from actwm.rollout.env import to_tensor, to_uint8
    from actwm.rollout.rollout import RolloutConfig, rollout
    from actwm.video import write_frames

    done = out / "done.json"
    names = [c["name"] for c in clips]
    interval = list(cfg.guidance_interval) if guidance != 1.0 else None
    key = {"model": str(model_dir), "clips": names, "guidance": guidance, "guidance_interval": interval}
    if done.is_file() and all(read_json(done).get(k) == v for k, v in key.items()):
        print(f"rollouts exist: {out}")
        return out
    if out.exists():
        shutil.rmtree(out)
    wm = WorldModel.load(model_dir).eval()
    order = shuffled_order(len(clips))
    first = torch.cat([to_tensor(c["frames"][0]) for c in clips])
    true_actions = torch.from_numpy(np.stack([c["actions"] for c in clips]))
    rcfg = RolloutConfig(
        steps=cfg.sample_steps,
        seed=cfg.seed,
        guidance=guidance,
        guidance_interval=tuple(interval) if interval else None,
    )
    seeds = [cfg.seed + i for i in range(len(clips))]
    for kind, actions in (("true", true_actions), ("shuffled", true_actions[order])):
        video = to_uint8(rollout(wm, first, actions, cfg=rcfg, seeds=seeds, progress=True))
        for clip, frames in zip(clips, video):
            write_frames(out / kind / clip["name"], frames)
    for clip in clips:
        gt = out / "gt" / clip["name"]
        write_frames(gt, clip["frames"])
        if clip["segmentation"] is not None:
            np.save(gt / "segmentation.npy", clip["segmentation"].astype(np.int32))
            atomic_write_json(gt / "meta.json", {"static_ids": [int(i) for i in clip["static_ids"]]})
    atomic_write_json(done, {**key, "shuffled_from": order})
    return out


def evaluate(cfg: DemoConfig, rollouts: Path) -> dict[str, Any]:
    """Stage 6: score `true/` and `shuffled/` against `gt/` with the same code as `actwm eval`."""
    from actwm.eval.cli import EvalOptions, run_eval

    metrics = ["psnr", "ssim"] + (["scs"] if cfg.scs else [])
    results = {}
    for kind in ("true", "shuffled"):
        opts = EvalOptions(
            gt=rollouts / "gt",
            pred=rollouts / kind,
            metrics=metrics,
            horizons=list(cfg.horizons),
            json_out=rollouts / f"eval_{kind}.json",
            structures="segmentation",
            trim="none",
            progress=False,
        )
        res = run_eval(opts)
        atomic_write_json(rollouts / f"eval_{kind}.json", res)
        results[kind] = res
    return results


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, res in results.items():
        out[kind] = {m: {h: _round(v) for h, v in per_h.items()} for m, per_h in res["aggregate"].items()}
        out[kind + "_at"] = {
            m: {h: _round(v) for h, v in per_h.items()} for m, per_h in res.get("aggregate_at", {}).items()
        }
    return out


def _round(v: Any) -> Any:
    return None if v is None else round(float(v), 4)


# ------------------------------------------------------------------------------------------ report


def side_by_side_gif(rollouts: Path, name: str, path: Path, scale: int = 4, fps: float = 5.0) -> None:
    """ground truth | true actions | shuffled actions, upscaled, as one GIF."""
    from actwm.video import read_frames, write_gif

    rows = [read_frames(rollouts / kind / name) for kind in ("gt", "true", "shuffled")]
    t = min(len(r) for r in rows)
    sep = np.full((t, rows[0].shape[1], 2, 3), 255, np.uint8)
    strip = np.concatenate([rows[0][:t], sep, rows[1][:t], sep, rows[2][:t]], axis=2)
    strip = strip.repeat(scale, axis=1).repeat(scale, axis=2)
    write_gif(path, strip, fps)


def plot_comparison(summary: dict[str, Any], path: Path, horizons: tuple[int, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actwm.io import atomic_path

    metrics = [m for m in ("psnr", "ssim", "scs") if m in summary["action"]["true"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    axes = np.atleast_1d(axes)
    series = {
        "action": summary["action"],
        "scratch": summary.get("scratch"),
        "action, guidance 1": summary["action"].get("unguided"),
    }
    g = f", guidance {summary['action'].get('guidance', 1.0):g}"
    styles = {
        ("action", "true"): (f"EgoWM fine-tuned{g}, true actions", "C0", "-"),
        ("action", "shuffled"): (f"EgoWM fine-tuned{g}, shuffled actions", "C0", "--"),
        ("scratch", "true"): (f"from scratch{g}, true actions", "C1", "-"),
        ("scratch", "shuffled"): (f"from scratch{g}, shuffled actions", "C1", "--"),
        ("action, guidance 1", "true"): ("EgoWM fine-tuned, guidance 1, true", "C7", "-"),
        ("action, guidance 1", "shuffled"): ("EgoWM fine-tuned, guidance 1, shuffled", "C7", "--"),
    }
    for ax, m in zip(axes, metrics):
        for (model, kind), (label, colour, ls) in styles.items():
            if series[model] is None:
                continue
            ys = [series[model][kind][m].get(str(h)) for h in horizons]
            ax.plot(horizons, [np.nan if y is None else y for y in ys], ls, color=colour, marker="o", label=label)
        ax.set_xlabel("horizon (frames, mean over 1..h)")
        ax.set_title(m.upper() + (" (0-100)" if m == "scs" else ""))
        ax.set_xticks(list(horizons))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_losses(runs: dict[str, Path], path: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actwm.io import atomic_path

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, run in runs.items():
        f = run / "metrics.csv"
        if not f.is_file():
            continue
        rows = list(csv.DictReader(f.open()))
        if rows:
            ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(out: Path, metrics: dict[str, Any], gifs: list[str]) -> Path:
    def table(res: dict[str, Any]) -> str:
        hs = [str(h) for h in metrics["horizons"]]
        rows = []
        for m in ("psnr", "ssim", "scs"):
            for kind in ("true", "shuffled"):
                vals = res[kind].get(m)
                if vals is None:
                    continue
                cells = "".join(f"<td>{'' if vals.get(h) is None else f'{vals[h]:.3f}'}</td>" for h in hs)
                rows.append(f"<tr><td>{m.upper()}</td><td>{kind}</td>{cells}</tr>")
        head = "".join(f"<th>h={h}</th>" for h in hs)
        return f"<table><tr><th>metric</th><th>actions</th>{head}</tr>{''.join(rows)}</table>"

    gap = metrics["action"]["psnr_gap_db"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>actwm demo report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{padding:3px 9px;border-bottom:1px solid #ddd}"
        "img{image-rendering:pixelated;margin:4px}</style>",
        "<h1>actwm demo: an action-conditioned world model of a simulated robot</h1>",
        f"<p>Backbone <b>{html.escape(metrics['model'])}</b> (tiny real diffusers class), trained on "
        f"{metrics['config']['train_episodes']} simulated training scenes and evaluated on "
        f"{metrics['config']['test_episodes']} held-out scenes it never saw. Horizon h = mean over predicted frames "
        "1..h (frame 0 is given); 16-frame horizons are generated autoregressively in chunks.</p>",
        "<p><b>True-action PSNR minus shuffled-action PSNR</b> (dB): "
        + ", ".join(f"h={h}: {v:+.2f}" for h, v in gap.items())
        + "</p>",
        f"<p>Sampling: {metrics['config']['sample_steps']} Euler steps, classifier-free guidance on actions "
        f"{metrics['guidance']:g} at flow times t in ({metrics['config']['guidance_interval'][0]:g}, "
        f"{metrics['config']['guidance_interval'][1]:g}] (tables for guidance 1 follow each model).</p>",
        "<h2>EgoWM: passive stage, then action fine-tuning</h2>",
        table(metrics["action"]),
    ]
    if "unguided" in metrics["action"]:
        parts += ["<h3>same model, guidance 1</h3>", table(metrics["action"]["unguided"])]
    if "scratch" in metrics:
        parts += [
            "<h2>From scratch (actions from the first step, same total number of steps)</h2>",
            table(metrics["scratch"]),
        ]
        if "unguided" in metrics["scratch"]:
            parts += ["<h3>same model, guidance 1</h3>", table(metrics["scratch"]["unguided"])]
    parts += [
        "<h2>Metrics against horizon</h2><img src='assets/metrics.png'>",
        "<h2>Training loss</h2><img src='assets/losses.png'>",
        "<h2>Held-out rollouts</h2><p>left: ground truth · middle: true actions · right: shuffled actions</p>",
    ]
    parts += [f"<div><code>{html.escape(Path(g).stem)}</code><br><img src='{html.escape(g)}'></div>" for g in gifs]
    parts.append(f"<h2>Cost</h2><pre>{html.escape(json.dumps(metrics.get('timings', {}), indent=1))}</pre>")
    report = out / "report.html"
    atomic_write_text(report, "\n".join(parts))
    return report


# ------------------------------------------------------------------------------------------ main


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or resume) every stage; returns the metrics written to `DIR/metrics.json`."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "demo_config.json"
    if saved.is_file() and read_json(saved) != _jsonable(cfg):
        raise ValueError(f"{out} holds a demo with other settings ({saved}); use another --out or delete it")
    atomic_write_json(saved, _jsonable(cfg))
    clock = StageClock(out / "timings.json")
    data = clock.run("1 simulate", simulate_data, cfg, out)
    scratch = None
    if cfg.scratch:  # same total steps as passive + action, with actions from the start; runs on the other core
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        scratch = pool.submit(
            _scratch_in_child, cfg, data, out / "runs" / "scratch", cfg.passive_steps + cfg.action_steps
        )
        print("from-scratch comparison training in a second process", flush=True)
    passive = clock.run(
        "2 passive stage",
        train_stage,
        cfg,
        data,
        out / "runs" / "passive",
        steps=cfg.passive_steps,
        passive=True,
        init_from=None,
    )
    action = clock.run(
        "3 action stage",
        train_stage,
        cfg,
        data,
        out / "runs" / "action",
        steps=cfg.action_steps,
        passive=False,
        init_from=passive,
    )
    models = {"action": action}
    if scratch is not None:
        final, seconds, peak = clock.run("4 from scratch (wait)", scratch.result)
        pool.shutdown()
        clock.record("4 from scratch (parallel process)", seconds, peak)
        models["scratch"] = final
    clips = eval_clips(cfg, data)
    summary: dict[str, Any] = {}
    for name, model_dir in models.items():
        summary[name] = _rollout_and_score(cfg, clock, name, model_dir, clips, out / "rollouts" / name, cfg.guidance)
        if cfg.guidance != 1.0:  # the same model without guidance, for the record
            summary[name]["unguided"] = _rollout_and_score(
                cfg, clock, f"{name}, guidance 1", model_dir, clips, out / "rollouts" / f"{name}_unguided", 1.0
            )
    return clock.run("7 report", _report, cfg, out, summary, models, clips, clock)


def _rollout_and_score(
    cfg: DemoConfig,
    clock: StageClock,
    name: str,
    model_dir: Path,
    clips: list[dict[str, Any]],
    out: Path,
    guidance: float,
) -> dict[str, Any]:
    """Stages 5-6 for one model and guidance: `{true, shuffled, true_at, shuffled_at, psnr_gap_db, guidance}`."""
    rollouts = clock.run(f"5 rollouts ({name})", write_rollouts, cfg, model_dir, clips, out, guidance)
    res = _summary(clock.run(f"6 evaluate ({name})", evaluate, cfg, rollouts))
    res["psnr_gap_db"] = {
        str(h): _round(res["true"]["psnr"][str(h)] - res["shuffled"]["psnr"][str(h)]) for h in cfg.horizons
    }
    res["guidance"] = guidance
    return res


def _report(
    cfg: DemoConfig, out: Path, summary: dict[str, Any], models: dict[str, Path], clips, clock: StageClock
) -> dict[str, Any]:
    assets = out / "assets"
    plot_comparison(summary, assets / "metrics.png", cfg.horizons)
    plot_losses({n: out / "runs" / n for n in ("passive", "action", "scratch")}, assets / "losses.png")
    gifs = []
    for clip in clips[: min(6, len(clips))]:
        rel = f"assets/{clip['name']}.gif"
        side_by_side_gif(out / "rollouts" / "action", clip["name"], out / rel)
        gifs.append(rel)
    metrics = {
        "true": summary["action"]["true"],
        "shuffled": summary["action"]["shuffled"],
        "psnr_gap_db": summary["action"]["psnr_gap_db"],
        **{k: v for k, v in summary.items()},
        "guidance": cfg.guidance,
        "horizons": list(cfg.horizons),
        "horizon_definition": "metric at horizon h = mean over predicted frames 1..h (frame 0 is the given frame); "
        "'*_at' keys hold the value at frame h",
        "model": cfg.model,
        "held_out": {
            "clips": len(clips),
            "scenes": cfg.test_episodes,
            "shuffle": "clip i gets the actions of clip (i + n//2) mod n",
        },
        "config": _jsonable(cfg),
        "timings": json.loads(json.dumps(clock.stages)),  # stages before the report
    }
    atomic_write_json(out / "metrics.json", metrics)
    write_report(out, metrics, gifs)
    return metrics


def _jsonable(cfg: DemoConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actwm demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="a smoke run of every stage in about 3 minutes")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch comparison")
    args = p.parse_args(argv)
    cfg = (DemoConfig.quick if args.quick else DemoConfig)(out=args.out, threads=args.threads)
    if args.no_scratch:
        cfg = replace(cfg, scratch=False)
    if args.fresh and Path(cfg.out).exists():
        shutil.rmtree(cfg.out)
    try:
        metrics = run_demo(cfg)
    except ValueError as exc:
        print(f"actwm demo: error: {exc}", file=sys.stderr)
        return 2
    gap = metrics["psnr_gap_db"]
    print("\nPSNR true vs shuffled actions on held-out scenes (dB, mean over frames 1..h):")
    for h in cfg.horizons:
        t, s = metrics["true"]["psnr"][str(h)], metrics["shuffled"]["psnr"][str(h)]
        print(f"  h={h:>2}: true {t:6.2f}  shuffled {s:6.2f}  gap {gap[str(h)]:+.2f}")
    if "unguided" in metrics["action"]:
        u = metrics["action"]["unguided"]["psnr_gap_db"]
        print(
            f"(guidance {cfg.guidance:g} on actions; without guidance the gaps are "
            + ", ".join(f"h={h}: {u[str(h)]:+.2f}" for h in cfg.horizons)
            + ")"
        )
    print(f"\nreport:  {Path(cfg.out) / 'report.html'}\nmetrics: {Path(cfg.out) / 'metrics.json'}")
    print(f"output directory: {Path(cfg.out).resolve()}")
    return 0
