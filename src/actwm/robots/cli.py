"""`actwm kvaf`: Kinematic-to-Visual Action Fields (EA-WM) from calibrated robot datasets.

  actwm kvaf render DATASET:EPISODE --out DIR [--overlay] [--landmarks-json PATH] [--ee-link NAME] [--size N]

writes DIR/kvaf.mp4 (the KVAF video, frame by frame aligned with the episode), DIR/overlay.mp4 (--overlay: the
KVAF over the real frames, to check the calibration), the per-frame pixel coordinates
{"frames": [{"joints": [[u, v], ...], "ee": [u, v]}, ...]} (OpenCV pixels; null where a point is behind the
camera) and DIR/kvaf.json (what produced them).

  actwm kvaf recover VIDEO --episode DATASET:EPISODE --json PATH

recovers the end-effector pixel (heatmap centre), pose (axes) and gripper opening from a KVAF video of that
episode's camera (EA-WM 4.4), with ee7 actions between frames, detection rates and errors against the episode.
"""

from __future__ import annotations

import argparse
import sys

from actwm.cliargs import config_from_args
from actwm.errors import ArgumentParser
from actwm.robots.episode import SOURCES
from actwm.robots.export import ExportConfig, recover_episode, render_episode
from actwm.robots.render import RenderConfig


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="actwm kvaf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render an episode's KVAF video, overlay and landmarks")
    r.add_argument("episode", metavar="DATASET:EPISODE", help="LeRobot dataset root and episode index")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--overlay", action="store_true", help="also write the KVAF over the real frames")
    r.add_argument("--landmarks-json", help="per-frame pixel coordinates (default: OUT/landmarks.json)")
    r.add_argument("--ee-link", help="end-effector link name (default: the robot preset's, manip: its flange)")
    r.add_argument("--size", type=int, help="output rows (default: the dataset's video size)")
    r.add_argument("--robot", help="robot preset (default: the dataset's simulated world)")
    r.add_argument("--from", dest="source", choices=SOURCES, default="state", help="joint states or ee7 actions + IK")
    r.add_argument("--depth", choices=("percentile", "absolute"), default="percentile", help="depth colour range")
    r.add_argument("--depth-range", type=float, nargs=2, metavar=("NEAR", "FAR"), default=(0.3, 2.5))
    v = sub.add_parser("recover", help="recover ee pixel, pose and gripper (and ee7 actions) from a KVAF video")
    v.add_argument("video", help="KVAF video (drawn with the default settings, e.g. by `render` or a model)")
    v.add_argument("--episode", required=True, metavar="DATASET:EPISODE", help="episode whose camera it shows")
    v.add_argument("--json", required=True, help="output JSON (per-frame values, actions, detection rates)")
    v.add_argument("--robot", help="robot preset (default: the dataset's simulated world)")
    v.add_argument("--ee-link", help="end-effector link name")
    return p


def _recover(args: argparse.Namespace) -> int:
    cfg = ExportConfig(robot=args.robot, ee_link=args.ee_link)
    record = recover_episode(args.video, args.episode, args.json, cfg)
    err = record["errors"]
    rates = ", ".join(f"{k} {v:.2f}" for k, v in err["detection_rate"].items())
    print(f"detection rate: {rates}")
    print(
        f"median errors: pixel {err['pixel_error']:.3f} px, translation {err['translation_error']:.4f} m, "
        f"rotation {err['rotation_error']:.3f} rad, gripper {err['gripper_error']:.3f}"
    )
    print(f"json: {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "recover":
        return _recover(args)
    render = RenderConfig(depth_mode=args.depth, depth_range=tuple(args.depth_range))
    paths = render_episode(args.episode, args.out, config_from_args(ExportConfig, args, render=render))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
