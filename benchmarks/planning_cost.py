"""Seconds per planning decision vs M: a world model imagining all M candidates in one batch vs one at a time,
and the oracle's cost (snapshot, replay, render, restore).

    python benchmarks/planning_cost.py --json out/planning_cost.json [--ms 1,2,4,8] [--horizon 3] [--steps 4]

The world model is the tiny Wan 2.1 preset at 32 px with random weights (cost only; outputs are meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from actwm import __version__
from actwm.io import atomic_write_json
from actwm.models.world_model import WorldModel
from actwm.planning.tasks import ImageNavConfig, ImageNavTask
from actwm.planning.worlds import CheckpointWorld, OracleWorld
from actwm.rollout.rollout import RolloutConfig


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def measure(ms: list[int], horizon: int, steps: int, repeats: int, size: int = 32) -> dict:
    torch.manual_seed(0)
    task = ImageNavTask(ImageNavConfig(size=size))
    try:
        wm = WorldModel.from_preset("wan2.1-tiny", "nav3", image_size=[size, size], clip_frames=9).eval()
        world = CheckpointWorld(wm, RolloutConfig(steps=steps), frame_step=None)
        world.bind(task)
        oracle = OracleWorld()
        oracle.bind(task)
        obs = task.reset(task.episodes(seed=0, n=1)[0])
        rng = np.random.default_rng(0)
        rows = []
        for m in ms:
            plans = rng.integers(0, 3, size=(m, horizon))
            batched = _time(lambda: world.imagine(obs, plans), repeats)
            single = _time(lambda: [world.imagine(obs, plans[i : i + 1]) for i in range(m)], repeats)
            oracle_s = _time(lambda: oracle.imagine(obs, plans), repeats)
            rows.append(
                {
                    "M": m,
                    "batched_s": batched,
                    "one_at_a_time_s": single,
                    "speedup": single / batched,
                    "oracle_s": oracle_s,
                }
            )
            print(json.dumps(rows[-1]))
    finally:
        task.close()
    return {
        "rows": rows,
        "settings": {"horizon": horizon, "denoise_steps": steps, "repeats": repeats, "size": size},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "actwm_version": __version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True)
    p.add_argument("--ms", default="1,2,4,8")
    p.add_argument("--horizon", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    ms = [int(v) for v in args.ms.split(",")]
    atomic_write_json(args.json, measure(ms, args.horizon, args.steps, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
