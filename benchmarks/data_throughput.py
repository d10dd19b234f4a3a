"""Data throughput: simulator frames/s, clip loading samples/s, and loading time vs a tiny training step.

    python benchmarks/data_throughput.py --json results/data_throughput.json

Measures (single process unless stated):
- simulated frames/s of `nav` and `manip` at 64 and 128 px (one thread; env.step incl. rendering,
  driven by the scripted exploration policy), and the cost of one exact snapshot + restore
  (`env.unwrapped.snapshot()` / `restore()`, what a simulator-as-oracle planner pays per candidate);
- clip-loading samples/s from a LeRobot v3.0 store written by `actwm data simulate` (context 1 +
  horizon 8 = 9 frames at 64 px, batch 4) with DataLoader num_workers 0 and 2, in the first pass
  (cold: episodes decoded) and once the per-worker episode caches are warm;
- the time of one forward+backward of a tiny diffusers Wan transformer on 4 clips of 9 latent frames at
  16x16 (the step loading has to keep fed) and the ratio loading-time-per-batch / step-time
  (target < 0.25). Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actwm.io import atomic_write_json

TARGET_NAV128_FPS = 100.0
TARGET_RATIO = 0.25


def bench_sim(name: str, size: int, steps: int) -> float:
    """Frames/s of `env.step` (physics + rendering) under the scripted policy."""
    from actwm.sim import make, scripted_policy

    env = make(name, size=size, max_steps=steps + 10)
    try:
        policy = scripted_policy(name, np.random.default_rng(0))
        obs, _ = env.reset(seed=0)
        for _ in range(3):  # warm-up
            obs, *_ = env.step(np.asarray(policy(obs), dtype=np.float32))
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, *_ = env.step(np.asarray(policy(obs), dtype=np.float32))
        return steps / (time.perf_counter() - t0)
    finally:
        env.close()


def bench_snapshot(name: str, size: int, repeats: int) -> float:
    """Milliseconds per `snapshot()` + `restore()` pair, mid-episode under the scripted policy."""
    from actwm.sim import make, scripted_policy

    env = make(name, size=size)
    try:
        policy = scripted_policy(name, np.random.default_rng(0))
        obs, _ = env.reset(seed=0)
        for _ in range(10):
            obs, *_ = env.step(np.asarray(policy(obs), dtype=np.float32))
        u = env.unwrapped
        t0 = time.perf_counter()
        for _ in range(repeats):
            u.restore(u.snapshot())
        return (time.perf_counter() - t0) / repeats * 1000
    finally:
        env.close()


def bench_loading(
    store: Path, workers: int, batches: int, batch_size: int, cache_mb: float = 1024.0
) -> dict[str, float]:
    """Samples/s and seconds per batch when iterating a DataLoader over ClipDataset (cold and warm)."""
    from torch.utils.data import DataLoader

    from actwm.data.clips import ClipDataset

    ds = ClipDataset(store, split="train", context=1, horizon=8, normalise="std", cache_mb=cache_mb)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
        drop_last=True,
    )

    def run(n: int) -> float:
        it, t0, done = iter(loader), time.perf_counter(), 0
        while done < n:
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                continue
            done += 1
        return time.perf_counter() - t0

    cold = run(batches)  # includes worker start-up and first decodes
    warm = run(batches)
    return {
        "cold_samples_per_s": batches * batch_size / cold,
        "warm_samples_per_s": batches * batch_size / warm,
        "warm_s_per_batch": warm / batches,
        "cold_s_per_batch": cold / batches,
    }


def bench_step(repeats: int) -> float:
    """Seconds per forward+backward of a tiny Wan transformer on (4, 12, 9, 16, 16) latents."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=12,
        out_channels=12,
        text_dim=32,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(4, 12, 9, 16, 16)
    text = torch.zeros(4, 1, 32)

    def step() -> None:
        t = torch.randint(0, 1000, (4,))
        out = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats


def _table(rows: list[tuple[str, str, str]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, required=True, help="where to write the results (atomically)")
    p.add_argument("--sim-steps", type=int, default=100)
    p.add_argument("--store", type=Path, default=None, help="existing LeRobot store (default: simulate one)")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--batches", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--step-repeats", type=int, default=5)
    p.add_argument("--sim-only", action="store_true", help="only the simulator measurements")
    args = p.parse_args(argv)

    torch.set_num_threads(1)  # single thread for the simulators; restored for the step below
    results: dict[str, Any] = {
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__}
    }
    sim: dict[str, float] = {}
    for name in ("nav", "manip"):
        for size in (64, 128):
            sim[f"{name}_{size}"] = bench_sim(name, size, args.sim_steps)
            print(f"sim {name} {size}px: {sim[f'{name}_{size}']:.1f} frames/s", flush=True)
    results["sim_frames_per_s"] = sim
    snap = {name: bench_snapshot(name, 64, 50) for name in ("nav", "manip")}
    print(f"snapshot + restore (64 px): {snap}", flush=True)
    results["sim_snapshot_restore_ms"] = snap
    if args.sim_only:
        atomic_write_json(args.json, results)
        print(f"wrote {args.json}")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            from actwm.data.convert import simulate

            store = Path(tmp) / "nav64"
            t0 = time.perf_counter()
            simulate("nav", store, episodes=args.episodes, frames=args.frames, size=64, progress=False)
            results["store_write_s"] = time.perf_counter() - t0
        loading = {}
        for workers in (0, 2):
            loading[f"workers_{workers}"] = bench_loading(store, workers, args.batches, args.batch_size)
            print(f"loading workers={workers}: {loading[f'workers_{workers}']}", flush=True)
        # worst case: no episode cache, every clip decodes its episode's video range
        loading["workers_0_nocache"] = bench_loading(store, 0, max(4, args.batches // 4), args.batch_size, cache_mb=0)
        print(f"loading workers=0 no cache: {loading['workers_0_nocache']}", flush=True)
        results["loading"] = loading
        results["store"] = (
            str(args.store) if args.store else f"simulated nav, {args.episodes} x {args.frames} frames, 64 px"
        )

    torch.set_num_threads(os.cpu_count() or 1)
    step_s = bench_step(args.step_repeats)
    results["tiny_wan_step_s"] = step_s
    ratios = {k: v["warm_s_per_batch"] / step_s for k, v in loading.items()}
    ratios_cold = {k: v["cold_s_per_batch"] / step_s for k, v in loading.items()}
    results["loading_to_step_ratio_warm"] = ratios
    results["loading_to_step_ratio_cold"] = ratios_cold
    results["targets"] = {
        "nav_128_frames_per_s": {
            "target": TARGET_NAV128_FPS,
            "value": sim["nav_128"],
            "met": sim["nav_128"] >= TARGET_NAV128_FPS,
        },
        "loading_to_step_ratio": {
            "target": TARGET_RATIO,
            "value": ratios["workers_2"],
            "met": ratios["workers_2"] < TARGET_RATIO,
            "note": "workers=2, warm caches; batch 4 x 9 frames at 64 px "
            "vs tiny Wan fwd+bwd on 4 x 9 x 16 x 16 latents",
        },
    }
    rows = [("measure", "value", "unit")]
    rows += [(f"sim {k.replace('_', ' ')} px", f"{v:.1f}", "frames/s (1 thread)") for k, v in sim.items()]
    rows += [(f"sim {k} snapshot + restore", f"{v:.2f}", "ms (64 px)") for k, v in snap.items()]
    for k, v in loading.items():
        label = k.replace("workers_", "workers=").replace("_nocache", " no-cache")
        rows.append((f"clips {label} cold", f"{v['cold_samples_per_s']:.1f}", "samples/s"))
        rows.append((f"clips {label} warm", f"{v['warm_samples_per_s']:.1f}", "samples/s"))
    rows.append(("tiny Wan fwd+bwd step", f"{step_s * 1000:.1f}", "ms (batch 4 x 9 x 16 x 16)"))
    for k in ratios:
        label = k.replace("workers_", "workers=").replace("_nocache", " no-cache")
        rows.append(
            (f"load/step {label} warm", f"{ratios[k]:.3f}", f"cold {ratios_cold[k]:.3f}; target < {TARGET_RATIO}")
        )
    rows.append(
        (
            "nav 128 px target",
            f"{TARGET_NAV128_FPS:.0f}",
            "met" if results["targets"]["nav_128_frames_per_s"]["met"] else "NOT met",
        )
    )
    print(_table(rows))
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
