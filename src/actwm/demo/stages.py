"""The demo's stages 1-6: simulate, train (passive, action, scratch), roll out, score in memory.

Each stage skips what is already done, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actwm.data.convert import simulate
from actwm.data.lerobot import LeRobotDataset
from actwm.demo.config import DemoConfig, resolve_precision
from actwm.eval.engine import evaluate
from actwm.eval.prompts import structures_from_segmentation
from actwm.io import atomic_write_json, read_json
from actwm.models import svd, wan
from actwm.models.world_model import WorldModel, get_preset
from actwm.rollout.env import to_tensor, to_uint8
from actwm.rollout.rollout import RolloutConfig, rollout
from actwm.train import trainer
from actwm.train.config import TrainConfig
from actwm.video import read_frames, write_frames

KINDS = ("true", "shuffled")
PROBE_STEPS = 30  # steps timed before the demo says how long it will take


def simulate_data(cfg: DemoConfig, out: Path) -> Path:
    """Stage 1: `nav` episodes; training scenes use seeds 0.., held-out scenes 1_000_000.. (disjoint)."""
    data = out / "data"
    if (data / "meta" / "info.json").is_file():
        print(f"dataset exists: {data}")
        return data
    simulate(
        "nav",
        data,
        episodes=cfg.data.train_episodes,
        frames=cfg.data.episode_frames,
        size=cfg.data.size,
        seed=cfg.seed,
        test_episodes=cfg.data.test_episodes,
        policy_kwargs={"speed": cfg.data.frame_step.translation, "turn_rate": cfg.data.frame_step.rotation},
        env_kwargs={"supersample": cfg.data.supersample} if cfg.data.supersample != 1 else None,
    )
    return data


def _model_overrides(cfg: DemoConfig) -> dict[str, Any]:
    """The demo's tiny backbone: the preset's class, a pixel codec with spatial factor `cfg.model.spatial`, and a
    hidden width no smaller than a patch token (wider tokens make a low-rank bottleneck)."""
    base = get_preset(cfg.model.preset)
    k = base.codec["temporal"]
    channels = 3 * cfg.model.spatial * cfg.model.spatial * k
    encoder = cfg.model.encoder
    overrides: dict[str, Any] = {
        "encoder": {"hidden_dim": encoder.hidden_dim, "features": encoder.features, "max_freq": encoder.max_freq},
        "codec": {"kind": "pixel", "spatial": cfg.model.spatial, "temporal": k},
    }
    if base.family == "svd":  # EDM's own defaults suit a pixel-space tiny model better than SVD's high-noise ones
        overrides["objective"] = {"p_mean": -1.2, "p_std": 1.2, "sigma_max": 80.0}
        overrides["backbone_config"] = svd.tiny_config(channels)
    elif base.family == "wan":
        overrides["objective"] = {"shift": 1.0, "logit_mean": cfg.train.logit_mean}
        concat = base.backbone_config["in_channels"] != base.backbone_config["out_channels"]  # Wan 2.1 I2V style
        overrides["backbone_config"] = dict(
            wan.tiny_config(channels, concat_mask=k if concat else 0),
            num_layers=cfg.model.layers,
            num_attention_heads=cfg.model.heads,
            attention_head_dim=32,
            ffn_dim=64 * cfg.model.heads,
        )
    else:
        raise ValueError(
            f"DemoConfig.model.preset: the demo supports svd and wan tiny presets, got {cfg.model.preset!r}"
        )
    return overrides


def train_stage(
    cfg: DemoConfig, data: Path, run: Path, *, steps: int, passive: bool, init_from: Path | None, progress: bool = True
) -> Path:
    """Stages 2-4: one training run (resumes if interrupted, e.g. after `probe_speed`; skipped when finished)."""
    final = run / "final"
    if (final / "model.safetensors").is_file():
        print(f"finished run exists: {final}")
        return final
    return trainer.train(_train_config(cfg, data, run, steps, passive, init_from), progress=progress).final_dir


def probe_speed(
    cfg: DemoConfig, data: Path, run: Path, *, steps: int, passive: bool, init_from: Path | None, progress: bool = True
) -> float | None:
    """Train a fresh run's first `PROBE_STEPS` steps and return their median seconds per step (the first step,
    with its warm-up, left out). The run stops there with a checkpoint, which `train_stage` resumes bit-exactly
    (the same model as an uninterrupted run). None, training nothing, when the run has started or is too short."""
    if steps <= PROBE_STEPS or (run / "checkpoints").is_dir() or (run / "final" / "model.safetensors").is_file():
        return None
    tcfg = _train_config(cfg, data, run, steps, passive, init_from)
    return trainer.train(tcfg, progress=progress, stop_after=PROBE_STEPS).steady_seconds_per_step


def _train_config(
    cfg: DemoConfig, data: Path, run: Path, steps: int, passive: bool, init_from: Path | None
) -> TrainConfig:
    """The TrainConfig of one demo training run."""
    return TrainConfig.preset(
        "tiny-cpu",
        data=str(data),
        out=str(run),
        model=cfg.model.preset,
        model_overrides=_model_overrides(cfg),
        init_from=str(init_from) if init_from else None,
        steps=steps,
        batch_size=cfg.train.batch_size,
        lr=cfg.train.optim.lr,
        action_lr_mult=cfg.train.optim.action_lr_mult,
        action_dropout=cfg.train.action_dropout,
        mixed_precision=resolve_precision(cfg.train.mixed_precision),
        passive=passive,
        horizon=cfg.train.horizon,
        size=cfg.data.size,
        action_mode="cumulative",
        seed=cfg.seed,
        checkpoint_every=max(steps // 3, 1),
        resume=True,
        threads=cfg.threads,
        warmup_steps=min(50, steps // 10),
        compile=cfg.train.compile and not passive,
        optimizer_impl="fused",
        fast_paths=cfg.train.fast_paths,
    )


def _scratch_in_child(cfg: DemoConfig, data: Path, run: Path, steps: int) -> tuple[Path, float, float]:
    """Stage 4 in a child process: (final dir, seconds, peak RSS MB of the child)."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    final = train_stage(cfg, data, run, steps=steps, passive=False, init_from=None, progress=False)
    return final, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eval_clips(cfg: DemoConfig, data: Path) -> list[dict[str, Any]]:
    """Held-out clips of `eval_frames` frames: raw frames, raw actions, segmentation and static ids."""
    store = LeRobotDataset(data)
    test = [i for i in range(len(store)) if store.episode_meta(i).get("split") == "test"]
    if not test:
        raise ValueError(f"{data}: no held-out (split=test) episodes to evaluate on")
    clips = []
    per_episode = -(-cfg.eval.clips // len(test))
    for i in test:
        ep = store.episode(i)
        starts = range(0, len(ep) - cfg.eval.frames + 1, cfg.eval.frames - 1)
        seg = ep.extras.get("segmentation")
        static = set(int(i) for i in ep.meta.get("static_ids", []))
        for s in [s for s in starts if _has_structure(seg, static, s)][:per_episode]:
            sl = slice(s, s + cfg.eval.frames)
            clips.append(
                {
                    "name": f"ep{i:03d}_t{s:03d}",
                    "frames": ep.frames[sl],
                    "actions": ep.actions[sl],
                    "segmentation": ep.extras.get("segmentation", None)[sl] if "segmentation" in ep.extras else None,
                    "static_ids": ep.meta.get("static_ids", []),
                }
            )
    return clips[: cfg.eval.clips]


def _has_structure(seg: np.ndarray | None, static: set[int], start: int) -> bool:
    """True when frame `start` shows a static structure that SCS can track (same rule as `actwm eval`)."""
    if seg is None:
        return True
    return len(structures_from_segmentation(seg[start], static_ids=sorted(static))[1]) > 0


def shuffled_order(n: int) -> list[int]:
    """A derangement: clip i gets the actions of clip (i + n//2) mod n (another episode where possible)."""
    shift = max(1, n // 2)
    return [(i + shift) % n for i in range(n)]


def write_rollouts(
    cfg: DemoConfig, model_dir: Path, clips: list[dict[str, Any]], out: Path, guidance: float | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Stage 5: roll out every clip under its true and under shuffled actions.

    Writes `out/gt/<clip>/`, `out/true/<clip>/`, `out/shuffled/<clip>/` PNG folders (+ SCS side files, so
    `actwm eval --gt out/gt --pred out/true` re-scores them) and returns the frames in memory:
    `{"true": {clip: (T, H, W, 3) uint8}, "shuffled": {...}}`. A finished stage reads its PNGs back (lossless).
    `guidance`: classifier-free guidance on actions (default `cfg.guidance.scale`; 1 = none).
    """
    guidance = cfg.guidance.scale if guidance is None else guidance
    done = out / "done.json"
    names = [c["name"] for c in clips]
    interval = list(cfg.guidance.interval) if guidance != 1.0 else None
    key = {"model": str(model_dir), "clips": names, "guidance": guidance, "guidance_interval": interval}
    if done.is_file() and all(read_json(done).get(k) == v for k, v in key.items()):
        print(f"rollouts exist: {out}")
        return {kind: {n: read_frames(out / kind / n) for n in names} for kind in KINDS}
    if out.exists():
        shutil.rmtree(out)
    wm = WorldModel.load(model_dir).eval()
    order = shuffled_order(len(clips))
    first = torch.cat([to_tensor(c["frames"][0]) for c in clips])
    true_actions = torch.from_numpy(np.stack([c["actions"] for c in clips]))
    rcfg = RolloutConfig(
        steps=cfg.eval.sample_steps,
        seed=cfg.seed,
        guidance=guidance,
        guidance_interval=tuple(interval) if interval else None,
    )
    seeds = [cfg.seed + i for i in range(len(clips))]
    videos: dict[str, dict[str, np.ndarray]] = {}
    for kind, actions in zip(KINDS, (true_actions, true_actions[order])):
        video = to_uint8(rollout(wm, first, actions, cfg=rcfg, seeds=seeds, progress=True))
        videos[kind] = dict(zip(names, video))
        for clip, frames in zip(clips, video):
            write_frames(out / kind / clip["name"], frames)
    for clip in clips:
        gt = out / "gt" / clip["name"]
        write_frames(gt, clip["frames"])
        if clip["segmentation"] is not None:
            np.save(gt / "segmentation.npy", clip["segmentation"].astype(np.int32))
            atomic_write_json(gt / "meta.json", {"static_ids": [int(i) for i in clip["static_ids"]]})
    atomic_write_json(done, {**key, "shuffled_from": order})
    return videos


def score_rollouts(
    cfg: DemoConfig, clips: list[dict[str, Any]], videos: dict[str, dict[str, np.ndarray]], out: Path
) -> dict[str, Any]:
    """Stage 6: score the `true` and `shuffled` rollouts against the clips in memory with
    `actwm.eval.engine.evaluate` (the code `actwm eval` runs on the written folders; same numbers).
    Each result is also written to `out/eval_<kind>.json`."""
    results = {}
    for kind in KINDS:
        results[kind] = _score(cfg, clips, videos[kind])
        atomic_write_json(out / f"eval_{kind}.json", results[kind])
    return results


def _score(cfg: DemoConfig, clips: list[dict[str, Any]], video: dict[str, np.ndarray]) -> dict[str, Any]:
    """`evaluate` of `video` (`{clip: (T, H, W, 3) uint8}`) against the clips: the demo's metrics and horizons."""
    metrics = ["psnr", "ssim"] + (["scs"] if cfg.eval.scs else [])
    gt = {c["name"]: c["frames"] for c in clips}
    seg = {c["name"]: c["segmentation"].astype(np.int32) for c in clips if c["segmentation"] is not None}
    static = {c["name"]: [int(i) for i in c["static_ids"]] for c in clips if c["segmentation"] is not None}
    return evaluate(
        gt,
        video,
        metrics=metrics,
        horizons=list(cfg.eval.horizons),
        structures="segmentation",
        trim="none",
        progress=False,
        segmentation=seg or None,
        static_ids=static or None,
    )


def score_copy_first_frame(cfg: DemoConfig, clips: list[dict[str, Any]], out: Path | None = None) -> dict[str, Any]:
    """The no-model baseline: every future frame predicted as the given frame 0, scored exactly like the
    models' rollouts (same clips, same `evaluate` call). Returns `{metric: {h: value}}` (4 decimals) and
    writes the full result to `out/eval_copy_first_frame.json` when `out` is given."""
    video = {c["name"]: np.repeat(c["frames"][:1], len(c["frames"]), axis=0) for c in clips}
    res = _score(cfg, clips, video)
    if out is not None:
        atomic_write_json(out / "eval_copy_first_frame.json", res)
    return summarise({"copy_first_frame": res})["copy_first_frame"]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """`{kind: {metric: {h: value}}, kind_at: {...}}` rounded to 4 decimals."""
    out: dict[str, Any] = {}
    for kind, res in results.items():
        out[kind] = {m: {h: round_or_none(v) for h, v in per_h.items()} for m, per_h in res["aggregate"].items()}
        out[kind + "_at"] = {
            m: {h: round_or_none(v) for h, v in per_h.items()} for m, per_h in res.get("aggregate_at", {}).items()
        }
    return out


def round_or_none(v: Any) -> Any:
    return None if v is None else round(float(v), 4)
