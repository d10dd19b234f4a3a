"""`actwm demo` command line: `main(argv)`."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from actwm.demo import pipeline, report
from actwm.demo.config import DEFAULT_OUT, DemoConfig
from actwm.demo.pipeline import run_demo
from actwm.errors import ArgumentParser

__all__ = ["main"]


def _config(args: argparse.Namespace) -> DemoConfig:
    """The demo's settings from the command line (a bad value raises ValueError naming its setting)."""
    cfg = (DemoConfig.quick if args.quick else DemoConfig)(out=args.out, threads=args.threads)
    steps = {f"{s}_steps": getattr(args, f"{s}_steps") for s in ("passive", "action")}
    cfg = cfg.updated({"train": {k: v for k, v in steps.items() if v is not None}})
    switches = {"no_scratch": ("train", "scratch"), "no_plan": ("plan", "enabled")}
    switches |= {"no_compile": ("train", "compile"), "no_fast_paths": ("train", "fast_paths")}
    for flag, (group, field) in switches.items():
        if getattr(args, flag):
            cfg = cfg.updated({group: {field: False}})
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="actwm demo", description=pipeline.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run of every stage (about 1 minute; under 3 on a laptop CPU)"
    )
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch comparison")
    p.add_argument("--no-plan", action="store_true", help="skip the closed-loop (ImageNav planning) stage")
    p.add_argument("--no-compile", action="store_true", help="train eagerly (no torch.compile of the action stages)")
    p.add_argument(
        "--no-fast-paths", action="store_true", help="train with the stock Wan modules (no TrainConfig.fast_paths)"
    )
    for stage in ("passive", "action"):
        p.add_argument(
            f"--{stage}-steps", type=int, default=None, help=f"{stage}-stage training steps (default: the preset's)"
        )
    args = p.parse_args(argv)
    try:
        cfg = _config(args)
        if args.fresh and Path(cfg.out).exists():
            shutil.rmtree(cfg.out)
        metrics = run_demo(cfg)
    except ValueError as exc:
        print(f"actwm demo: error: {exc}", file=sys.stderr)
        return 2
    gap = metrics["psnr_gap_db"]
    print("\nPSNR true vs shuffled actions on held-out scenes (dB, mean over frames 1..h):")
    for h in cfg.eval.horizons:
        t, s = metrics["true"]["psnr"][str(h)], metrics["shuffled"]["psnr"][str(h)]
        print(f"  h={h:>2}: true {t:6.2f}  shuffled {s:6.2f}  gap {gap[str(h)]:+.2f}")
    if report.baseline_line(metrics):
        print(report.baseline_line(metrics))
    if "unguided" in metrics["action"]:
        u = metrics["action"]["unguided"]["psnr_gap_db"]
        print(
            f"(guidance {cfg.guidance.scale:g} on actions; without guidance the gaps are "
            + ", ".join(f"h={h}: {u[str(h)]:+.2f}" for h in cfg.eval.horizons)
            + ")"
        )
    if "planning" in metrics:
        print("\nImageNav closed loop (held-out planning scenes): SR [95%], SPL")
        for name, agent in metrics["planning"]["agents"].items():
            sm = agent["summary"]
            lo, hi = sm["success_rate_ci95"]
            print(f"  {name:>7}: SR {sm['success_rate']:.3f} [{lo:.2f}, {hi:.2f}]  SPL {sm['spl']:.3f}  n {sm['n']}")
    print(f"\nreport:  {Path(cfg.out) / 'report.html'}\nmetrics: {Path(cfg.out) / 'metrics.json'}")
    print(f"output directory: {Path(cfg.out).resolve()}")
    return 0
