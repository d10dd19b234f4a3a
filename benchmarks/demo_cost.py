"""Wall time and peak memory of `actwm demo`, per stage, against the targets (15 min / 6 GB; --quick 3 min).

Runs the demo in a fresh output directory in a subprocess (as a user would) and reads its
`timings.json`; the whole-process peak RSS (main + the parallel from-scratch process) comes from
`getrusage` of the children.

    python benchmarks/demo_cost.py --json demo_cost.json            # the default demo
    python benchmarks/demo_cost.py --quick --json demo_cost.json    # the smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actwm.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", help="demo output directory (default: a temp dir)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="actwm_demo_cost_"))
    cmd = [sys.executable, "-m", "actwm.cli", "demo", "--out", str(out), "--fresh"] + (
        ["--quick"] if args.quick else []
    )
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    timings = json.loads((out / "timings.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    budget_s, budget_mb = (180, 6144) if args.quick else (900, 6144)
    print(f"{'stage':<36} {'seconds':>9} {'peak RSS MB':>12}")
    for name, s in timings["stages"].items():
        print(f"{name:<36} {s['seconds']:>9.1f} {s['peak_rss_mb']:>12.0f}{'  (parallel)' if s.get('parallel') else ''}")
    print(f"{'total (wall, whole command)':<36} {wall:>9.1f} {peak_mb:>12.0f}")
    print(
        f"wall / budget = {wall / budget_s:.2f} ({budget_s} s); peak / budget = {peak_mb / budget_mb:.2f} "
        f"({budget_mb} MB)"
    )
    unguided = metrics["action"].get("unguided", {}).get("psnr_gap_db")
    print(
        f"PSNR gap (true - shuffled) at h=8: {metrics['psnr_gap_db']['8']:+.2f} dB (guidance "
        f"{metrics.get('guidance', 1.0):g})" + (f", {unguided['8']:+.2f} dB without guidance" if unguided else "")
    )
    atomic_write_json(
        args.json,
        {
            "quick": args.quick,
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "budget_seconds": budget_s,
            "budget_rss_mb": budget_mb,
            "wall_ratio": round(wall / budget_s, 3),
            "rss_ratio": round(peak_mb / budget_mb, 3),
            "stages": timings["stages"],
            "psnr_gap_db": metrics["psnr_gap_db"],
            "psnr_gap_db_unguided": unguided,
            "out": str(out),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
