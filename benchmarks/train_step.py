"""Seconds per optimizer step of the training engine on CPU, and the speedup of each speed switch.

    python benchmarks/train_step.py --json results/train_step.json [--switches compile fused ...] [--threads 1]

Builds the demo's model (`actwm demo`'s DemoConfig: the `wan2.1-i2v-tiny` preset with the demo's width,
layers, pixel codec; batch 8 of 9-frame 32 px clips) once per switch setting of `TrainConfig`, all from the
same seed, and times full optimizer steps (data loading from an in-memory dataset, forward, backward,
clipping, AdamW, schedule). After warm-up steps the settings run side by side: `--rounds` rounds, each
timing `--steps-per-round` steps of every setting in a rotated order, so load on a shared machine hits
them alike. A setting's speedup in a round is baseline seconds / its seconds; the JSON holds the median
and [min, max] over rounds. Every setting runs the same seeded steps, so its loss curve is compared with
the baseline's (max absolute difference; float rounding only when a switch is exact in intent).

Switches (`TrainConfig` fields, each default-off): compile (torch.compile of the backbone, inductor),
channels_last, sdpa_math / sdpa_flash (`sdpa_backend`), foreach / fused (`optimizer_impl`), fp32 / bf16
(`mixed_precision` against the baseline's), and `all` (every switch named in `--combine`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from actwm.io import atomic_write_json
from actwm.train import TrainConfig
from actwm.train.trainer import Trainer

try:  # the demo's model settings; `actwm.demo` became a package on another branch
    from actwm.demo import DemoConfig, resolve_precision
    from actwm.demo.stages import _model_overrides
except ImportError:
    from actwm.demo import DemoConfig, _model_overrides, resolve_precision

SWITCHES: dict[str, dict[str, Any]] = {
    "compile": {"compile": True},
    "channels_last": {"channels_last": True},
    "sdpa_math": {"sdpa_backend": "math"},
    "sdpa_flash": {"sdpa_backend": "flash"},
    "foreach": {"optimizer_impl": "foreach"},
    "fused": {"optimizer_impl": "fused"},
    "fp32": {"mixed_precision": "no"},  # against a bf16 baseline: what autocast buys on this CPU
    "bf16": {"mixed_precision": "bf16"},
}


class _Clips(Dataset):
    """Random clips shaped like the demo's: video `(T, 3, H, W)` in [0, 1], nav3 actions `(T, 3)`."""

    def __init__(self, n: int, frames: int, size: int, dim: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.rand(n, frames, 3, size, size, generator=g)
        self.actions = torch.randn(n, frames, dim, generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "actions": self.actions[i], "episode_index": 0, "start": i}


def demo_config(out: str, threads: int, mixed_precision: str, steps: int, switches: dict[str, Any]) -> TrainConfig:
    """The demo's action-stage TrainConfig (model, batch, clip, lr) with `switches` set."""
    demo = DemoConfig()
    fields = dict(
        out=out,
        model=demo.model,
        model_overrides=_model_overrides(demo),
        steps=steps,
        batch_size=demo.batch_size,
        lr=demo.lr,
        action_lr_mult=demo.action_lr_mult,
        action_dropout=demo.action_dropout,
        mixed_precision=mixed_precision,
        horizon=demo.horizon,
        size=demo.size,
        action_mode="cumulative",
        seed=demo.seed,
        checkpoint_every=0,
        threads=threads,
        warmup_steps=5,
    )
    return TrainConfig.preset("tiny-cpu", **{**fields, **switches})


class _Runner:
    """One Trainer stepped by hand: `run(k)` times k more steps, `losses` holds every step's loss."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset) -> None:
        self.trainer = Trainer(cfg, dataset=dataset, progress=False)
        self.trainer.model.train()
        self.step, self.losses, self.seconds = 0, [], []

    def run(self, k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            loss = self.trainer.backward(self.step)
            self.trainer.apply()
            self.losses.append(float(loss))
            self.step += 1
        return (time.perf_counter() - t0) / k


def measure(args: argparse.Namespace, threads: int, precision: str) -> dict[str, Any]:
    """Warm up every setting, then time them side by side in rotated order; ratios per round."""
    torch.set_num_threads(threads)
    settings = {"baseline": {}} | {s: SWITCHES[s] for s in args.switches}
    if args.combine:
        settings["all"] = {k: v for s in args.combine for k, v in SWITCHES[s].items()}
    total = args.warmup + args.rounds * args.steps_per_round
    data = _Clips(64, DemoConfig().horizon + 1, DemoConfig().size)
    per_round: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        runners, setup_s = {}, {}
        for name, sw in settings.items():
            t0 = time.perf_counter()
            runners[name] = _Runner(demo_config(f"{tmp}/{name}", threads, precision, total, sw), data)
            runners[name].run(args.warmup)  # includes compilation for `compile`
            setup_s[name] = time.perf_counter() - t0
        names = list(settings)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                per_round[name].append(runners[name].run(args.steps_per_round))
        losses = {name: run.losses for name, run in runners.items()}
    base = per_round["baseline"]
    speedup = {}
    for name in names[1:]:
        ratios = [b / s for b, s in zip(base, per_round[name])]
        speedup[name] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    drift = {n: max(abs(a - b) for a, b in zip(losses["baseline"], losses[n])) for n in names[1:]}
    return {
        "threads": threads,
        "mixed_precision": precision,
        "seconds_per_step": {n: statistics.median(v) for n, v in per_round.items()},
        "speedup_over_baseline": speedup,
        "loss_max_abs_diff": drift,
        "baseline_losses": losses["baseline"],
        "warmup_seconds": setup_s,
        "settings": settings,
    }


def _print(res: dict[str, Any]) -> None:
    print(f"threads {res['threads']}, mixed precision {res['mixed_precision']}")
    print(f"{'setting':>14} {'s/step':>8} {'speedup median [min, max]':>28} {'loss drift':>11}")
    for name, sec in res["seconds_per_step"].items():
        sp = res["speedup_over_baseline"].get(name)
        text = f"{sp['median']:.3f} [{sp['min']:.3f}, {sp['max']:.3f}]" if sp else "1"
        drift = res["loss_max_abs_diff"].get(name, 0.0)
        print(f"{name:>14} {sec:>8.4f} {text:>28} {drift:>11.2e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--mixed-precision", nargs="+", default=["auto"], help="no, bf16 or auto (the demo's choice)")
    p.add_argument("--switches", nargs="*", default=list(SWITCHES)[:6], choices=list(SWITCHES))
    p.add_argument("--combine", nargs="*", default=[], choices=list(SWITCHES), help="also time these together")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=2)
    args = p.parse_args(argv)
    results = []
    for precision in args.mixed_precision:
        for threads in args.threads:
            res = measure(args, threads, resolve_precision(precision))
            _print(res)
            results.append(res)
    result = {
        "benchmark": "train_step",
        "model": DemoConfig().model,
        "size": DemoConfig().size,
        "batch": DemoConfig().batch_size,
        "frames": DemoConfig().horizon + 1,
        "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "results": results,
        "speedup_over_baseline": results[0]["speedup_over_baseline"],
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "native_bf16": resolve_precision("auto") == "bf16",
    }
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
