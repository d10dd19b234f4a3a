"""`actwm data simulate|convert|info`: build and inspect LeRobot v3.0 stores."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from actwm.data.convert import FORMATS, convert, simulate
from actwm.data.lerobot import LeRobotDataset
from actwm.errors import ArgumentParser

EXIT_BAD_INPUT = 2  # as actwm's error boundary (actwm.errors): one line on stderr, exit 2


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="actwm data", description="Simulate, convert and inspect datasets (LeRobot v3.0).")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="record episodes in a built-in world into a LeRobot v3.0 store")
    s.add_argument("world", choices=["nav", "manip"])
    s.add_argument("--episodes", type=int, required=True, help="training episodes (scene seeds seed..seed+N-1)")
    s.add_argument("--frames", type=int, required=True, help="frames per episode")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--test-episodes", type=int, default=0, help="test episodes in disjoint scenes (seeds from 1e6), split=test"
    )
    s.add_argument("--frames-per-file", type=int, default=2000)
    s.add_argument("--crf", type=int, default=0, help="H.264 quality, 0 = lossless coding (default)")
    s.add_argument("--pix-fmt", default="yuv444p", choices=["yuv444p", "yuv420p"])
    s.add_argument(
        "--robot-speed", type=float, help="nav explorer forward speed, m per step (default 0.17; the demo uses 0.08)"
    )
    s.add_argument(
        "--robot-turn-rate", type=float, help="nav explorer max turn, rad per step (default 0.3; the demo uses 0.1)"
    )
    s.add_argument(
        "--supersample",
        type=int,
        default=1,
        help="odd anti-aliasing factor: render at s x size and average s x s blocks (default 1 = off; the demo uses 3)",
    )
    s.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("convert", help="convert a dataset to LeRobot v3.0 (resumes a partial DST)")
    c.add_argument("--from", dest="fmt", required=True, help=f"source format: {', '.join(FORMATS)}")
    c.add_argument("--dataset", default=None, help="GNM dataset name (recon, scand, tartan_drive, sacson, go_stanford)")
    c.add_argument("--splits", type=Path, default=None, help="data_splits folder (GNM); default: SRC/../data_splits")
    c.add_argument("--split", default=None, help="split label for episodes without one (e.g. test for a val folder)")
    c.add_argument("--fps", type=float, default=None, help="override the source frame rate (GNM 4, RECON 3)")
    c.add_argument("--frames-per-file", type=int, default=2000)
    c.add_argument("--crf", type=int, default=18, help="H.264 quality (0 = lossless coding)")
    c.add_argument("--pix-fmt", default="yuv420p", choices=["yuv420p", "yuv444p"])
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)

    i = sub.add_parser("info", help="summarise a LeRobot store (v3.0 or v2.1)")
    i.add_argument("path", type=Path)
    i.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def info_summary(path: Path) -> dict:
    """Episodes, frames, fps, action space, splits and statistics of a LeRobot store.

    Checks every file first (`LeRobotDataset.verify`): a broken store raises ValueError / FileNotFoundError
    naming the broken file instead of being summarised as fine.
    """
    ds = LeRobotDataset(path)
    ds.verify()
    splits = Counter(s or "(none)" for s in ds.splits())
    lengths = ds.episode_lengths
    stats = {k: {s: v for s, v in st.items() if s in ("mean", "std", "min", "max")} for k, st in ds.stats.items()}
    return {
        "path": str(path),
        "codebase_version": ds.version,
        "episodes": len(ds),
        "frames": ds.num_frames,
        "fps": ds.fps,
        "action_space": ds.action_space,
        "video_key": ds.video_key,
        "image_shape": ds.features[ds.video_key]["shape"],
        "episode_length": {"min": min(lengths), "max": max(lengths), "mean": sum(lengths) / len(lengths)},
        "splits": dict(splits),
        "features": sorted(ds.features),
        "extra_features": sorted(ds.extra_features),
        "metric_spacing": ds.info.get("actwm", {}).get("metric_spacing"),
        "stats": stats,
    }


def _fmt(v: object) -> str:
    if isinstance(v, list):
        flat = [x for x in _flatten(v)]
        return "[" + ", ".join(f"{x:.4g}" for x in flat[:8]) + (", ..." if len(flat) > 8 else "") + "]"
    return str(v)


def _flatten(v: object):
    if isinstance(v, list):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


def _print_info(summary: dict) -> None:
    for key in (
        "path",
        "codebase_version",
        "episodes",
        "frames",
        "fps",
        "action_space",
        "video_key",
        "image_shape",
        "episode_length",
        "splits",
        "metric_spacing",
    ):
        print(f"{key:>16}: {summary[key]}")
    print(f"{'features':>16}: {', '.join(summary['features'])}")
    if summary["extra_features"]:
        print(
            f"{'extra features':>16}: {', '.join(summary['extra_features'])} (npz, see info.json actwm.extras_storage)"
        )
    print("statistics:")
    for feat, st in summary["stats"].items():
        print(f"  {feat}")
        for s, v in st.items():
            print(f"    {s:>4}: {_fmt(v)}")


def _policy_kwargs(args: argparse.Namespace) -> dict[str, float] | None:
    """The nav explorer's speed/turn-rate overrides from the command line (None when not given)."""
    kw = {k: v for k, v in (("speed", args.robot_speed), ("turn_rate", args.robot_turn_rate)) if v is not None}
    if kw and args.world != "nav":
        raise ValueError("--robot-speed / --robot-turn-rate apply to the nav world only")
    return kw or None


def _run(args: argparse.Namespace) -> None:
    """Run one sub-command: simulate or convert (then summarise the store), or info."""
    if args.cmd == "info":
        summary = info_summary(args.path)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_info(summary)
        return
    store = {"frames_per_file": args.frames_per_file, "crf": args.crf, "pix_fmt": args.pix_fmt}
    store["progress"] = not args.no_progress
    if args.cmd == "simulate":
        env_kwargs = {"supersample": args.supersample} if args.supersample != 1 else None
        sim = {"episodes": args.episodes, "frames": args.frames, "size": args.size, "seed": args.seed}
        sim.update(test_episodes=args.test_episodes, policy_kwargs=_policy_kwargs(args), env_kwargs=env_kwargs)
        out = simulate(args.world, args.out, **sim, **store)
    else:
        src = {"dataset": args.dataset, "split": args.split, "fps": args.fps, "splits_dir": args.splits}
        out = convert(args.fmt, args.src, args.dst, **src, **store)
    _print_info(info_summary(out))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (ValueError, OSError) as exc:  # expected failures: one line naming the file or option
        print(f"actwm data {args.cmd}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
