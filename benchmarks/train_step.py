"""Seconds per optimizer step of the training engine on CPU, and the speedup of each speed switch.

    python benchmarks/train_step.py --json results/train_step.json                  # fp32 + bf16 + AVX2 rows
    python benchmarks/train_step.py --mixed-precision no --no-avx2 --switches fused  # one quick row

Builds the demo's model (`actwm demo`'s DemoConfig: the `wan2.1-i2v-tiny` preset with the demo's width,
layers, pixel codec; batch 8 of 9-frame 32 px clips) once per switch setting of `TrainConfig`, all from the
same seed, and times full optimizer steps (data loading from an in-memory dataset, forward, backward,
clipping, AdamW, schedule).

1. Setup: every setting is built and runs its first step alone; that first step (torch.compile's compilation
   for `compile`) is reported separately as `first_step_seconds`, then `--warmup` more steps.
2. Side by side: `--rounds` rounds, each timing `--steps-per-round` steps of every setting in a rotated
   order, so load on a shared machine hits them alike. A setting's speedup in a round is baseline seconds /
   its seconds; the JSON holds the median and [min, max] over rounds, from wall time
   (`speedup_over_baseline`) and from this process's CPU time (`cpu_speedup_over_baseline`: on one thread
   it is the wall speedup of a quiet machine, and it barely moves when other jobs share the cores).
3. Loss drift: every setting runs the same seeded steps; `loss_max_abs_diff` is its largest difference from
   the baseline's loss (float rounding only: no switch changes the computation).

Rows: one per `--mixed-precision` x `--threads` (default fp32 "no", and "bf16" where the CPU has native
bf16), plus an AVX2-emulated fp32 row (`--no-avx2` to skip) run in a child process with
`ATEN_CPU_CAPABILITY=avx2` (ATen kernels and inductor's generated code use AVX2 only) and
`ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN matmuls and convolutions), the closest this machine gets to a laptop
without AVX-512 or bf16. Each row's fingerprint records its CPU capability and these variables.

Compilation: by default the run uses a fresh, empty inductor cache (`TORCHINDUCTOR_CACHE_DIR` in a temp
dir), so the first compiled setting's `first_step_seconds` is what a new user's first run pays; later
compiled settings of the same dtype reuse its kernels (`cache` says "cold" or "warm"). `--warm-cache`
keeps the user's cache.

Switches (`TrainConfig` fields, each default-off): compile (torch.compile of the backbone, inductor),
channels_last, sdpa_math / sdpa_flash (`sdpa_backend`), foreach / fused (`optimizer_impl`), fast_paths (the Wan
adapter's one-key cross-attention and per-frame modulation under autograd), and `all`
(every switch named in `--combine`, default compile + fused + fast_paths); `--combos` adds more combinations
(`compile+fused`), each a setting of its own in the same rounds. `bf16` (bf16 autocast) makes precision a
switch, so `--mixed-precision no --switches bf16 --combos compile+fused+fast_paths+bf16` times fp32 and bf16
interleaved in one row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

import actwm
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
    "fast_paths": {"fast_paths": True},
    "bf16": {"mixed_precision": "bf16"},  # autocast in the same row's rounds: precision compared side by side
}
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")


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
        model=demo.model.preset,
        model_overrides=_model_overrides(demo),
        steps=steps,
        batch_size=demo.train.batch_size,
        lr=demo.train.optim.lr,
        action_lr_mult=demo.train.optim.action_lr_mult,
        action_dropout=demo.train.action_dropout,
        mixed_precision=mixed_precision,
        horizon=demo.train.horizon,
        size=demo.data.size,
        action_mode="cumulative",
        seed=demo.seed,
        checkpoint_every=0,
        threads=threads,
        warmup_steps=5,
    )
    return TrainConfig.preset("tiny-cpu", **{**fields, **switches})


class _Runner:
    """One Trainer stepped by hand: `run(k)` runs k more steps and returns (wall, CPU) seconds per step;
    `losses` holds every step's loss."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset) -> None:
        self.trainer = Trainer(cfg, dataset=dataset, progress=False)
        self.trainer.model.train()
        self.step, self.losses = 0, []

    def run(self, k: int) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(k):
            loss = self.trainer.backward(self.step)
            self.trainer.apply()
            self.losses.append(float(loss))
            self.step += 1
        return (time.perf_counter() - t0) / k, (time.process_time() - c0) / k


def _ratios(base: list[float], other: list[float]) -> dict[str, float]:
    r = [b / s for b, s in zip(base, other)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def _setup(settings: dict[str, dict], args: argparse.Namespace, threads: int, precision: str, tmp: str) -> tuple:
    """Build every setting and run its first step (compilation) and warm-up alone: (runners, first-step facts)."""
    total = 1 + args.warmup + args.rounds * args.steps_per_round
    data = _Clips(64, DemoConfig().train.horizon + 1, DemoConfig().data.size)
    runners, first, compiled_before = {}, {}, False
    for name, sw in settings.items():
        runners[name] = _Runner(demo_config(f"{tmp}/{name}", threads, precision, total, sw), data)
        wall, cpu = runners[name].run(1)
        cache = ("warm" if compiled_before or args.warm_cache else "cold") if sw.get("compile") else None
        compiled_before |= bool(sw.get("compile"))
        first[name] = {"wall": wall, "cpu": cpu, "inductor_cache": cache}
        if args.warmup:
            runners[name].run(args.warmup)
    return runners, first


def measure(args: argparse.Namespace, threads: int, precision: str) -> dict[str, Any]:
    """One row: set every setting up, then time them side by side in rotated order; ratios per round."""
    torch.set_num_threads(threads)
    settings = {"baseline": {}} | {s: SWITCHES[s] for s in args.switches}
    if args.combine:
        settings["all"] = {k: v for s in args.combine for k, v in SWITCHES[s].items()}
    settings |= {combo: {k: v for s in combo.split("+") for k, v in SWITCHES[s].items()} for combo in args.combos}
    names = list(settings)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        runners, first = _setup(settings, args, threads, precision, tmp)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                w, c = runners[name].run(args.steps_per_round)
                wall[name].append(w)
                cpu[name].append(c)
        losses = {name: run.losses for name, run in runners.items()}
    return {
        "threads": threads,
        "mixed_precision": precision,
        "seconds_per_step": {n: statistics.median(v) for n, v in wall.items()},
        "cpu_seconds_per_step": {n: statistics.median(v) for n, v in cpu.items()},
        "speedup_over_baseline": {n: _ratios(wall["baseline"], wall[n]) for n in names[1:]},
        "cpu_speedup_over_baseline": {n: _ratios(cpu["baseline"], cpu[n]) for n in names[1:]},
        "first_step_seconds": first,
        "wall_seconds_per_round": wall,  # per setting, one value per round (rounds are side by side)
        "cpu_seconds_per_round": cpu,
        "loss_max_abs_diff": {n: max(abs(a - b) for a, b in zip(losses["baseline"], losses[n])) for n in names[1:]},
        "baseline_losses": losses["baseline"],
        "settings": settings,
        "fingerprint": row_fingerprint(threads, precision),
    }


def cpu_flags() -> dict[str, bool]:
    """The x86 flags that decide the CPU kernels (from /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return {f: f in have for f in CPU_FLAGS}


def row_fingerprint(threads: int, precision: str) -> dict[str, Any]:
    """What decides a row's kernels: CPU capability in use, emulation variables, dtype, threads, versions."""
    return {
        "actwm": actwm.__version__,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx2_emulated": all(os.environ.get(k) == v for k, v in AVX2_ENV.items()),
        "env": {k: os.environ.get(k) for k in (*AVX2_ENV, "TORCHINDUCTOR_CACHE_DIR", "OMP_NUM_THREADS")},
        "threads": threads,
        "dtype": {"no": "float32", "bf16": "bfloat16 autocast"}.get(precision, precision),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _print(res: dict[str, Any], label: str) -> None:
    print(
        f"{label}: threads {res['threads']}, mixed precision {res['mixed_precision']}, "
        f"capability {res['fingerprint']['cpu_capability']}"
    )
    print(
        f"{'setting':>14} {'s/step':>7} {'cpu s':>7} {'speedup (wall) [min, max]':>26} "
        f"{'speedup (cpu)':>13} {'first step':>10} {'loss drift':>10}"
    )
    for name, sec in res["seconds_per_step"].items():
        sp, cs = res["speedup_over_baseline"].get(name), res["cpu_speedup_over_baseline"].get(name)
        text = f"{sp['median']:.3f} [{sp['min']:.3f}, {sp['max']:.3f}]" if sp else "1"
        ctext = f"{cs['median']:.3f}" if cs else "1"
        first = res["first_step_seconds"][name]["wall"]
        drift = res["loss_max_abs_diff"].get(name, 0.0)
        print(
            f"{name:>14} {sec:>7.4f} {res['cpu_seconds_per_step'][name]:>7.4f} {text:>26} {ctext:>13} "
            f"{first:>9.1f}s {drift:>10.2e}",
            flush=True,
        )


def _avx2_rows(args: argparse.Namespace, tmp: str) -> list[dict[str, Any]]:
    """The fp32 rows again in a child process whose ATen, inductor and oneDNN use AVX2 only."""
    out = Path(tmp) / "avx2.json"
    cmd = [sys.executable, __file__, "--json", str(out), "--mixed-precision", "no", "--no-avx2", "--child"]
    cmd += ["--threads", *map(str, args.threads), "--switches", *args.switches, "--combine", *args.combine]
    cmd += ["--combos", *args.combos] if args.combos else []
    cmd += ["--warmup", str(args.warmup), "--rounds", str(args.rounds), "--steps-per-round", str(args.steps_per_round)]
    cmd += ["--warm-cache"] if args.warm_cache else []
    subprocess.run(cmd, check=True, env={**os.environ, **AVX2_ENV})
    rows = json.loads(out.read_text())["results"]
    for row in rows:
        if row["fingerprint"]["cpu_capability"] != "AVX2":
            raise RuntimeError(f"AVX2 emulation did not take: capability {row['fingerprint']['cpu_capability']}")
    return rows


def fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings and machine (each row adds its own `fingerprint`)."""
    demo = DemoConfig()
    model = {
        "model": demo.model.preset,
        "size": demo.data.size,
        "batch": demo.train.batch_size,
        "frames": demo.train.horizon + 1,
    }
    return {
        "benchmark": "train_step",
        **model,
        "overrides": _model_overrides(demo),
        "seed": demo.seed,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "cpu_model": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "native_bf16": resolve_precision("auto") == "bf16",
        "actwm": actwm.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "inductor_cache": "user's" if args.warm_cache else "fresh per process",
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--mixed-precision", nargs="+", default=None, help="no, bf16 (default: no, and bf16 if native)")
    p.add_argument(
        "--switches",
        nargs="*",
        default=["compile", "channels_last", "sdpa_math", "fused", "fast_paths"],
        choices=list(SWITCHES),
    )
    p.add_argument(
        "--combine",
        nargs="*",
        default=["compile", "fused", "fast_paths"],
        choices=list(SWITCHES),
        help="also time these together as 'all' (none: skip)",
    )
    p.add_argument(
        "--combos",
        nargs="*",
        default=[],
        help="more settings timed side by side, each switches joined by '+' (e.g. compile+fused)",
    )
    p.add_argument("--warmup", type=int, default=2, help="steps after the first, before timing")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps-per-round", type=int, default=3)
    p.add_argument("--no-avx2", dest="avx2", action="store_false", help="skip the AVX2-emulated fp32 row")
    p.add_argument("--warm-cache", action="store_true", help="keep the user's inductor cache (default: a fresh one)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = sorted({s for combo in args.combos for s in combo.split("+")} - set(SWITCHES))
    if unknown:
        p.error(f"--combos: unknown switch(es) {unknown}; choose from {list(SWITCHES)}")
    if args.mixed_precision is None:
        args.mixed_precision = ["no"] + (["bf16"] if resolve_precision("auto") == "bf16" else [])
    return args


def row_label(row: dict[str, Any]) -> str:
    """ "fp32_t1", "bf16_t1", "avx2_fp32_t1", ...: a row's key in `by_row`."""
    dtype = {"no": "fp32"}.get(row["mixed_precision"], row["mixed_precision"])
    return ("avx2_" if row["fingerprint"]["avx2_emulated"] else "") + f"{dtype}_t{row['threads']}"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="actwm_train_step_") as tmp:
        if not args.warm_cache:  # inductor reads this at its first compile
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        results = []
        for precision in args.mixed_precision:
            for threads in args.threads:
                res = measure(args, threads, precision)
                _print(res, "AVX2-emulated" if args.child else "native")
                results.append(res)
        if args.avx2 and cpu_flags().get("avx2"):  # the child prints its rows
            results += _avx2_rows(args, tmp)
        elif args.avx2:
            print("no AVX2 on this CPU: no AVX2-emulated row")
    result = {
        **fingerprint(args),
        # the first row's (fp32, first thread count): the case issue 14 targets; every row's under `by_row`
        "speedup_over_baseline": results[0]["speedup_over_baseline"],
        "by_row": {
            row_label(r): {k: r[k] for k in ("speedup_over_baseline", "cpu_speedup_over_baseline", "loss_max_abs_diff")}
            for r in results
        },
        "results": results,
    }
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
