"""KVAF rendering speed: frames/s of forward kinematics + projection + rasterisation, one thread.

    python benchmarks/kvaf_render.py --json results/kvaf_render.json

For the `manip` arm (kuka_with_gripper2.sdf, pybullet FK in a DIRECT client) seen by the `manip` camera,
renders `--frames` random configurations near the sim's reset pose (all elements on, per-video depth
percentiles) at 128 and 256 px, best of `--repeats` runs, and reports frames/s with FK included and the FK
share. Target (issue 13): >= 200 frames/s at 128 px on one core; reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pybullet  # noqa: E402

import actwm  # noqa: E402
from actwm.io import atomic_write_json  # noqa: E402
from actwm.robots.kinematics import ArmKinematics  # noqa: E402
from actwm.robots.render import RenderConfig, render_kvaf  # noqa: E402
from actwm.robots.spec import ROBOTS  # noqa: E402
from actwm.sim.common import PinholeCamera, look_at_extrinsics  # noqa: E402
from actwm.sim.manip import ManipConfig  # noqa: E402

TARGET_128_FPS = 200.0
_REST = np.array([0.006, 0.413, -0.011, -1.589, 0.005, 1.138, -0.007])


def bench(size: int, frames: int, repeats: int, seed: int) -> dict[str, float]:
    """Best-of-`repeats` seconds for FK and for FK + render of `frames` configurations at `size` px."""
    rng = np.random.default_rng(seed)
    q = _REST + rng.normal(0.0, 0.25, (frames, 7))
    opening = rng.uniform(0.0, 1.0, frames)
    mc = ManipConfig()
    k = PinholeCamera(size, size, mc.fov_deg, near=0.05, far=6.0).intrinsics
    e = look_at_extrinsics(mc.camera_eye, mc.camera_target)
    robot = ROBOTS["manip"]
    cfg = RenderConfig(size, size)
    fk_best, total_best = float("inf"), float("inf")
    with ArmKinematics(robot) as kin:
        render_kvaf([kin.forward(q[:4], opening[:4])], k, e, cfg, [robot.gripper])  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            pose = kin.forward(q, opening)
            t1 = time.perf_counter()
            render_kvaf([pose], k, e, cfg, [robot.gripper])
            t2 = time.perf_counter()
            fk_best, total_best = min(fk_best, t1 - t0), min(total_best, t2 - t0)
    return {"frames_per_s": frames / total_best, "fk_configs_per_s": frames / fk_best, "fk_share": fk_best / total_best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="result file")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    results = {f"{s}px": bench(s, args.frames, args.repeats, args.seed) for s in (128, 256)}
    record = {
        "benchmark": "kvaf_render",
        "results": results,
        "target_128px_frames_per_s": TARGET_128_FPS,
        "meets_target": results["128px"]["frames_per_s"] >= TARGET_128_FPS,
        "fingerprint": {
            "actwm_version": actwm.__version__,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "pybullet_api": pybullet.getAPIVersion(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": {"cv2": cv2.getNumThreads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "settings": {**vars(args), "robot": "manip", "render": "RenderConfig defaults, all elements"},
        },
    }
    atomic_write_json(args.json, record)
    for name, r in results.items():
        print(f"{name}: {r['frames_per_s']:.0f} frames/s (FK {r['fk_configs_per_s']:.0f} configs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
