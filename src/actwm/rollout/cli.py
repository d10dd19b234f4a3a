"""`actwm rollout`: imagine frames from a start frame under an action sequence, write PNGs, mp4 and GIF.

    actwm rollout --checkpoint runs/demo/model --frame start.png --actions actions.npy --out imagined/
    actwm rollout --checkpoint runs/demo/model --episode runs/demo/data:3 --frames 17 --out imagined/

Actions are raw per-step actions in the action space's units (row t: frame t -> t+1), from `.npy`
(`(T, D)` or `(N, T, D)` for N candidates), `.csv` (T rows of D numbers) or `.json` (nested lists).
With `--episode STORE:INDEX` the start frame and (unless `--actions` is given) the true actions come
from a LeRobot store, and the ground truth is written beside the prediction (`OUT/gt/rollout/`, `OUT/pred/rollout/`
PNGs;
videos in `OUT/videos/`), ready for `actwm eval --gt OUT/gt --pred OUT/pred`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from actwm.cliargs import config_from_args
from actwm.data.lerobot import LeRobotDataset
from actwm.errors import ArgumentParser
from actwm.io import atomic_write_json
from actwm.models.world_model import WorldModel
from actwm.rollout.env import to_tensor, to_uint8
from actwm.rollout.kvaf import episode_start, kvaf_video
from actwm.rollout.rollout import RolloutConfig, rollout
from actwm.video import read_image, write_frames, write_gif, write_mp4


def load_actions(path: str | Path, dim: int) -> np.ndarray:
    """Read raw actions as `(N, T, D)` float32 from .npy / .csv / .json; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: action file does not exist")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        elif path.suffix == ".json":
            arr = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        else:
            raise ValueError(f"{path}: unsupported action file type {path.suffix!r} (use .npy, .csv or .json)")
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read actions ({exc})") from exc
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: cannot read actions ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != dim:
        raise ValueError(f"{path}: actions must be (T, {dim}) or (N, T, {dim}) for this model, got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"{path}: need actions for at least 2 frames, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: actions contain NaN or inf")
    return arr.astype(np.float32)


def _episode_inputs(spec: str, frames: int | None, start: int):
    root, _, index = spec.rpartition(":")
    if not root or not index.isdigit():
        raise ValueError(f"--episode must be STORE:INDEX, got {spec!r}")
    store = LeRobotDataset(root)
    count = len(store.episode_lengths)
    if int(index) >= count:
        raise ValueError(f"--episode {spec}: no episode {index} in {root} (it has {count}: 0..{count - 1})")
    ep = store.episode(int(index))
    stop = len(ep) if frames is None else start + frames
    if start < 0 or stop > len(ep):
        raise ValueError(f"--episode {spec}: frames [{start}, {stop}) exceed its {len(ep)} frames")
    return ep.frames[start:stop], ep.actions[start:stop]


def _kvaf_of(wm: WorldModel, args: argparse.Namespace, actions: np.ndarray, hw: tuple[int, int]):
    """A KVAF model's KVAF video of the commanded actions, rendered from the episode's start state (else None)."""
    if wm.kvaf is None or wm.kvaf.numeric is not None:
        return None
    if not args.episode:
        raise ValueError("a KVAF world model renders the commanded motion from a recorded start state: use --episode")
    root, _, index = args.episode.rpartition(":")
    start = episode_start(root, int(index), args.start, tuple(hw))
    return kvaf_video(torch.from_numpy(actions), start, wm.action_space.name)


def write_video_set(out: Path, kind: str, name: str, frames: np.ndarray, fps: float) -> None:
    """`(T, H, W, 3)` uint8 -> out/kind/name/*.png (one sequence per folder, as `actwm eval` reads them)
    and out/videos/name_kind.mp4 + .gif."""
    write_frames(out / kind / name, frames)
    h, w = frames.shape[1:3]
    if h % 2 == 0 and w % 2 == 0:
        write_mp4(out / "videos" / f"{name}_{kind}.mp4", frames, fps)
    write_gif(out / "videos" / f"{name}_{kind}.gif", frames, fps)


OUR_OUTPUTS = ("pred", "gt", "videos", "rollout.json")  # what a rollout writes into --out (and replaces)


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError for options that cannot give a meaningful rollout, before anything is loaded or written."""
    if args.frames is not None and args.frames < 2:
        raise ValueError(f"--frames must be >= 2 (the start frame and at least one imagined frame), got {args.frames}")
    if args.start < 0:
        raise ValueError(f"--start must be >= 0, got {args.start}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise ValueError(f"--fps must be a positive number, got {args.fps}")
    rollout_config(args)  # the sampling options: RolloutConfig checks them
    if args.frames is not None and args.frame is not None:
        raise ValueError("--frames applies to --episode; with --frame the actions file sets the length")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")


def rollout_config(args: argparse.Namespace) -> RolloutConfig:
    """The sampling options (`--steps`, `--sampler`, `--guidance`, `--guidance-interval`, `--window`, `--seed`,
    `--compile`)."""
    interval = tuple(args.guidance_interval) if args.guidance_interval else None
    return config_from_args(RolloutConfig, args, guidance_interval=interval)


def publish(tmp: Path, out: Path) -> None:
    """Move a finished rollout from `tmp` into `out`, replacing only our own outputs from an older rollout there
    (other files in `out` are kept); each entry is swapped in by a rename."""
    out.mkdir(parents=True, exist_ok=True)
    trash = Path(tempfile.mkdtemp(prefix=".old-rollout-", dir=out))
    try:
        for name in OUR_OUTPUTS:
            if (out / name).exists():
                os.replace(out / name, trash / name)
            if (tmp / name).exists():
                os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="actwm rollout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="saved world model directory (config.json + model.safetensors)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frame", help="start frame image (PNG/JPG) at the model's training size")
    src.add_argument("--episode", help="STORE:INDEX of a LeRobot episode to start from")
    p.add_argument("--start", type=int, default=0, help="start frame index within --episode")
    p.add_argument("--frames", type=int, help="frames to imagine with --episode (default: all)")
    p.add_argument("--actions", help="raw actions file (.npy, .csv, .json)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--sampler", default="euler", choices=["euler", "heun"])
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance on actions")
    p.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="guide only at noise levels in (LO, HI] (flow time t in [0, 1], or EDM sigma)",
    )
    p.add_argument("--window", type=int, help="frames per chunk (default: the model's training clip length)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone first (pays a one-off compilation; faster sampling after it)",
    )
    p.add_argument("--fps", type=float, help="output video fps (default: the model's)")
    args = p.parse_args(argv)
    check_args(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    wm = WorldModel.load(args.checkpoint).eval()
    dim = wm.action_space.dim
    gt = None
    if args.episode:
        gt, true_actions = _episode_inputs(args.episode, args.frames, args.start)
        start = gt[0]
        actions = load_actions(args.actions, dim) if args.actions else true_actions[None].astype(np.float32)
    else:
        if not args.actions:
            raise ValueError("--actions is required with --frame")
        start = read_image(args.frame)
        actions = load_actions(args.actions, dim)
    kvaf = _kvaf_of(wm, args, actions, start.shape[:2])
    video = rollout(
        wm,
        to_tensor(start),
        torch.from_numpy(actions),
        cfg=rollout_config(args),
        progress=True,
        kvaf=kvaf,
    )
    frames = to_uint8(video)
    fps = args.fps or wm.config.fps or 5.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    names = ["rollout"] if len(frames) == 1 else [f"candidate_{i:03d}" for i in range(len(frames))]
    try:
        for name, seq in zip(names, frames):
            write_video_set(tmp, "pred", name, seq, fps)
        if gt is not None:
            write_video_set(tmp, "gt", names[0], gt, fps)
        _write_record(tmp / "rollout.json", args, frames, fps)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, out)
    print(f"wrote {len(frames)} rollout(s) of {frames.shape[1]} frames to {out}")
    return 0


def _write_record(path: Path, args: argparse.Namespace, frames: np.ndarray, fps: float) -> None:
    atomic_write_json(
        path,
        {
            "checkpoint": str(args.checkpoint),
            "candidates": len(frames),
            "frames": int(frames.shape[1]),
            "steps": args.steps,
            "sampler": args.sampler,
            "seed": args.seed,
            "guidance": args.guidance,
            "guidance_interval": args.guidance_interval,
            "compile": args.compile,
            "fps": fps,
        },
    )
