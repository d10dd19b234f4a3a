"""`actwm plan`: closed-loop planning with any world model, judged by task success.

    actwm plan --task imagenav --world-model oracle --proposals 8 --horizon 3 --episodes 20 --seed 0 \\
        --json out/plan.json [--sweep-proposals 1,2,4,8,16] [--report out/]
    actwm plan --calibrate-stop --stop-metric ncc --json out/stop.json
    torchrun --nproc_per_node 2 -m actwm.planning ...     # episodes sharded over processes (gloo), rank 0 writes
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch.distributed as dist

from actwm.cliargs import config_from_args
from actwm.errors import ArgumentParser
from actwm.io import atomic_write_json
from actwm.planning.calibrate import calibrate_stop
from actwm.planning.report import write_report
from actwm.planning.runner import PROPOSERS, TASKS, PlanRunConfig, run
from actwm.planning.scorers import METRICS, GoalSimilarity


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--sweep-proposals must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"--sweep-proposals needs integers >= 1, got {text!r}")
    return values


def shard_rank(distributed: bool) -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return int(os.environ.get("RANK", "0")) if distributed else 0


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="actwm plan", description=__doc__.split("\n")[0])
    p.add_argument("--task", default="imagenav", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--world-model", default="none", help="none, oracle, a checkpoint directory or http(s)://URL")
    p.add_argument("--proposer", default="base", help=f"one of {', '.join(PROPOSERS)}")
    p.add_argument("--proposals", type=int, default=8, help="M: plans imagined per decision")
    p.add_argument("--horizon", type=int, default=10, help="L: agent actions per plan")
    p.add_argument(
        "--execute", type=int, default=10, help="k: most actions executed per decision (a plan's stop ends it)"
    )
    p.add_argument("--iterations", type=int, default=3, help="CEM / MPPI iterations")
    p.add_argument("--episodes", type=int, default=40, help="N: size of the episode set `--seed` draws")
    p.add_argument("--seed", type=int, default=0, help="picks the episode set and every seed of the run")
    p.add_argument("--scorer", default="ssim", help=f"goal similarity of imagined frames: {', '.join(METRICS)}")
    p.add_argument("--reduce", default="last", choices=("max", "last"))
    p.add_argument("--stop-metric", default="ncc", help="similarity of the stop rule, or 'never'")
    p.add_argument("--stop-threshold", type=float, default=None, help="default: the calibrated one")
    p.add_argument("--oracle-stop", action="store_true", help="ORACLE upper bound: stop when at the goal")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--budget", type=int, default=None, help="agent actions per episode (default: the task's)")
    p.add_argument("--rollout-steps", type=int, default=10, help="denoising steps of a video world model")
    p.add_argument(
        "--compile", action="store_true", help="compile a checkpoint world model's sampling backbone (torch.compile)"
    )
    p.add_argument(
        "--base-margin", type=float, default=0.0, help="keep the base plan unless another scores this much more"
    )
    p.add_argument("--sweep-proposals", default=None, help="e.g. 1,2,4,8,16: SR vs M")
    p.add_argument("--json", required=True, help="output JSON")
    p.add_argument("--report", default=None, help="directory for report.html")
    p.add_argument("--videos", default=None, help="directory for per-episode videos (real | imagined | goal)")
    p.add_argument("--calibrate-stop", action="store_true", help="calibrate the stop threshold and exit")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.calibrate_stop:
        result = calibrate_stop(GoalSimilarity(args.stop_metric), size=args.size, seed=args.seed)
        atomic_write_json(args.json, result)
        print(json.dumps(result))
        return 0
    sweep = _ints(args.sweep_proposals) if args.sweep_proposals else None
    cfg = config_from_args(PlanRunConfig, args)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # under torchrun: shard episodes over processes
    if distributed and not dist.is_initialized():
        dist.init_process_group("gloo")
    try:
        result = run(cfg, progress=not args.no_progress, sweep=sweep, videos=args.videos)
    finally:
        if distributed:
            dist.destroy_process_group()
    if shard_rank(distributed) != 0:
        return 0
    atomic_write_json(args.json, result)
    if args.report:
        write_report([result], args.report)
    s = result["summary"]
    print(
        f"{cfg.task} world model {s['world_model']}: SR {s['success_rate']:.3f} "
        f"[{s['success_rate_ci95'][0]:.2f}, {s['success_rate_ci95'][1]:.2f}], "
        + (f"SPL {s['spl']:.3f}, " if "spl" in s else "")
        + f"n {s['n']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
