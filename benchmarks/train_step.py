"""Seconds per optimizer step of the training engine (`actwm.train.trainer.Trainer`) on CPU.

    python benchmarks/train_step.py --json results/train_step.json [--model wan2.1-tiny] [--threads 1 2]

Times full optimizer steps (data loading from an in-memory dataset, forward, backward, clipping, AdamW,
schedule) of a tiny real-backbone world model at 32 px, batch 4, 9 frames (1 context + 8 horizon),
after warm-up steps, for each thread count. Reports the median and mean over the timed steps; on a
shared machine the numbers move with the load (the median is the figure to quote).
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

import torch
from torch.utils.data import Dataset

from actwm.io import atomic_write_json


class _Clips(Dataset):
    def __init__(self, n: int, frames: int, size: int, dim: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.rand(n, frames, 3, size, size, generator=g)
        self.actions = torch.randn(n, frames, dim, generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "actions": self.actions[i], "episode_index": 0, "start": i}


def time_steps(
    model: str, threads: int, size: int, batch: int, frames: int, warmup: int, steps: int, mixed_precision: str
) -> list[float]:
    from actwm.train import TrainConfig
    from actwm.train.trainer import Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            out=str(Path(tmp) / "run"),
            model=model,
            steps=warmup + steps,
            batch_size=batch,
            lr=1e-4,
            checkpoint_every=0,
            cpu=True,
            threads=threads,
            mixed_precision=mixed_precision,
        )
        trainer = Trainer(cfg, dataset=_Clips(16, frames, size), progress=False)
        out = []
        for step in range(warmup + steps):
            t0 = time.perf_counter()
            trainer.backward(step)
            trainer.apply()
            if step >= warmup:
                out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--model", default="wan2.1-tiny")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mixed-precision", default="no")
    args = p.parse_args(argv)
    rows = []
    for threads in args.threads:
        times = time_steps(
            args.model, threads, args.size, args.batch, args.frames, args.warmup, args.steps, args.mixed_precision
        )
        rows.append(
            {
                "threads": threads,
                "median_s": statistics.median(times),
                "mean_s": statistics.fmean(times),
                "min_s": min(times),
                "max_s": max(times),
                "steps": len(times),
            }
        )
    print(
        f"{args.model}: {args.size} px, batch {args.batch}, {args.frames} frames, mixed precision "
        f"{args.mixed_precision}"
    )
    print(f"{'threads':>7} {'median s/step':>14} {'mean':>8} {'min':>8} {'max':>8}")
    for r in rows:
        print(f"{r['threads']:>7} {r['median_s']:>14.4f} {r['mean_s']:>8.4f} {r['min_s']:>8.4f} {r['max_s']:>8.4f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "train_step",
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "frames": args.frames,
        "mixed_precision": args.mixed_precision,
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": load,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
