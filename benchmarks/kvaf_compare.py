"""KVAF vs numeric actions (EgoWM injection) vs KVAF + actions vs no actions on `manip` (EA-WM 4.3 in small).

Each variant is the tiny Wan 2.1 world model trained with the same step budget, batch, lr and seed on the same
simulated manip episodes, then scored on held-out scenes (the store's `test` split: disjoint scene seeds) with
`actwm.eval.engine.evaluate`:

* `psnr`, `ssim`; `scs` (structures: the simulator's segmentation of the table and blocks, the episode's
  `static_ids`, >= `--min-area` px on the context frame);
* `traj_block`: WorldArena trajectory accuracy (`traj`, normalised DTW in [0, 1]) of the blocks' paths: the
  segmentation reduced to the block ids (`static_ids[1:]`: the manip scene builds the table, then the blocks),
  the farthest-moving ground-truth block scored, both videos tracked by the classical mask tracker (blocks
  are 7-9 px at 32 px: rough tracks);
* `traj_ee`: the same accuracy for the end-effector path, for every variant alike: the arm's segmentation pixels
  within `--ee-radius` px of the recorded flange pose projected with the recorded camera (`actwm.geometry`) on
  the context frame, tracked by the same tracker through the ground-truth and the predicted video;
  `traj_ee_exact` scores the predicted track against the exact projected flange path instead (tracker drift
  then counts against the prediction; `traj_ee_exact_gt_ceiling`: what the ground-truth video scores so);
* `arm_psnr`: PSNR within 2 px of the ground-truth arm's KVAF drawing.

Not scored: an end-effector path recovered from a *predicted* KVAF video (`actwm.robots.recover`). At generation
the KVAF stream is an input (the commanded KVAF's latents, re-noised to each step's level from fixed noise);
the only KVAF-side prediction is the KVAF head's flow output of the last network call, whose x0 estimate is the
given KVAF plus a small correction: recovering the end-effector from it would measure the model's input, not
its prediction. Also measured: the training step time of the KVAF model over the EgoWM (actions) model.

    OMP_NUM_THREADS=1 python benchmarks/kvaf_compare.py --json kvaf_compare.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

import actwm
from actwm.batch import Batch
from actwm.data.clips import ClipDataset
from actwm.data.convert import simulate
from actwm.data.lerobot import LeRobotDataset
from actwm.eval.engine import evaluate
from actwm.eval.trackers import get_tracker
from actwm.eval.trajectory import centroid_tracks, trajectory_accuracy
from actwm.geometry import project_points
from actwm.io import atomic_write_json
from actwm.models.conditioning import Conditioning
from actwm.models.kvaf import KVAF, kvaf_branch_for, numeric_inputs
from actwm.models.world_model import WorldModel
from actwm.pixels import signed_to_unit, unit_to_uint8
from actwm.train import TrainConfig, train
from actwm.train.kvaf_data import KvafClips

VARIANTS = {  # name -> (TrainConfig.conditioning, passive, model overrides)
    "none": ("actions", True, {}),  # the bare backbone (passive stage: no action branch trains or conditions)
    "actions": ("actions", False, {}),  # EgoWM numeric-action injection
    "kvaf": ("kvaf", False, {}),
    "kvaf+actions": ("kvaf+actions", False, {}),
    "numeric-stream": ("kvaf", False, {"kvaf": {"source": "numeric"}}),  # EA-WM's "w/o KVAFs" ablation
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="result file")
    ap.add_argument("--store", help="an existing manip store (default: simulate one in a temporary folder)")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--test-episodes", type=int, default=2)
    ap.add_argument("--frames", type=int, default=24, help="frames per simulated episode")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps per variant")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--eval-clips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-area", type=int, default=4, help="smallest structure (px) for scs / traj")
    ap.add_argument("--ee-radius", type=float, default=3.0, help="end-effector mask radius (px)")
    return ap


def _arm_psnr(gt: np.ndarray, pred: np.ndarray, kvaf: np.ndarray) -> float:
    """PSNR over frames 1.. within 2 px of the drawn arm; arrays `(T, H, W, 3)` uint8."""
    mask = np.stack([cv2.dilate((k.max(-1) > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) for k in kvaf]) > 0
    mask[0] = False
    err = ((gt.astype(np.float64) - pred.astype(np.float64)) ** 2).mean(-1)[mask]
    return float(10 * np.log10(255.0**2 / max(err.mean(), 1e-10))) if err.size else float("nan")


class Side:
    """Per-clip ground-truth side data from the store: segmentation, static ids, arm id, end-effector pixels."""

    def __init__(self, store: str | Path, test: KvafClips, size: int) -> None:
        self.ds, self.test, self.size = LeRobotDataset(store), test, size
        h, w = self.ds.features[self.ds.video_key]["shape"][:2]
        if h != w:
            raise ValueError(f"{store}: this comparison resizes segmentation of square frames only, got {h}x{w}")
        self._episodes: dict[int, tuple[np.ndarray, list[int]]] = {}

    def _episode(self, i: int) -> tuple[np.ndarray, list[int]]:
        """`(T, size, size)` int32 segmentation (nearest, as `resize_square` maps pixel centres) and static ids."""
        if i not in self._episodes:
            ep = self.ds.episode(i)
            if "segmentation" not in ep.extras or "static_ids" not in ep.meta:
                raise ValueError(f"{self.ds.root}: episode {i} has no segmentation / static_ids (a manip store has)")
            seg = torch.from_numpy(np.asarray(ep.extras["segmentation"], np.float32))[:, None]
            seg = torch.nn.functional.interpolate(seg, size=(self.size, self.size), mode="nearest-exact")
            self._episodes[i] = seg[:, 0].round().numpy().astype(np.int32), [int(x) for x in ep.meta["static_ids"]]
        return self._episodes[i]

    def clip(self, item: dict) -> dict:
        """`seg (n, H, W)`, `static_ids` (table, blocks...), `blocks`, `arm` id, `ee (n, 2)` flange pixels."""
        seg, static = self._episode(int(item["episode_index"]))
        n = item["video"].shape[0]
        seg = seg[int(item["start"]) + np.arange(n) * self.test.step]
        names = list(self.ds.features["observation.state"]["names"])
        xyz = item["state"].numpy()[:, [names.index(c) for c in ("ee_x", "ee_y", "ee_z")]]
        uv, _ = project_points(xyz[:, None], item["intrinsics"].numpy(), item["extrinsics"].numpy())
        # the manip scene adds the table, then the blocks, then loads the robot: its body id follows the last block
        return dict(seg=seg, static_ids=static, blocks=static[1:], arm=static[-1] + 1, ee=uv[:, 0])


def _ee_scores(gt: np.ndarray, pred: np.ndarray, side: dict, radius: float, min_area: int) -> tuple[float, ...]:
    """End-effector path accuracy: (tracker on both videos, prediction against the exact projected path, the
    ground-truth video's track against that path: the ceiling of the second); NaN when the flange region of the
    arm is not visible on the context frame. `gt`, `pred` `(n, H, W, 3)` uint8."""
    h, w = gt.shape[1:3]
    vv, uu = np.mgrid[0:h, 0:w]
    u0, v0 = side["ee"][0]
    mask0 = (side["seg"][0] == side["arm"]) & ((uu - u0) ** 2 + (vv - v0) ** 2 <= radius**2)
    if mask0.sum() < min_area:
        return float("nan"), float("nan"), float("nan")
    tracker = get_tracker("classical")
    gt_track = centroid_tracks(tracker.track(gt, mask0[None]))
    pred_track = centroid_tracks(tracker.track(pred, mask0[None]))
    exact = side["ee"][:, None].astype(np.float64)
    return (
        trajectory_accuracy(gt_track, pred_track, (h, w)).score,
        trajectory_accuracy(exact, pred_track, (h, w)).score,
        trajectory_accuracy(exact, gt_track, (h, w)).score,
    )


def _block_traj(gt: np.ndarray, pred: np.ndarray, seg: np.ndarray, args: argparse.Namespace) -> tuple[float, list]:
    """`traj` of one clip over its block-only segmentation: (score, scored block ids); NaN, [] when no block
    of >= `--min-area` px is on the context frame."""
    options = {"traj": {"min_area": args.min_area}}
    try:
        res = evaluate(gt, pred, metrics=["traj"], segmentation=seg, horizons=[args.horizon], progress=False,
                       metric_options=options)  # fmt: skip
    except ValueError as exc:
        if "no segmented object" not in str(exc):
            raise
        return float("nan"), []
    seq = next(iter(res["sequences"].values()))
    return float(res["aggregate"]["traj"][str(args.horizon)]), seq["traj_info"]["scored_ids"][str(args.horizon)]


def _generate(wm: WorldModel, item: dict, i: int, sample_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(gt, pred, gt KVAF)` `(n, H, W, 3)` uint8 of one held-out clip, generated from its first frame."""
    b = Batch.from_collated(default_collate([item]))
    extra = None
    if wm.kvaf is not None:
        numeric = wm.kvaf.numeric is not None
        inputs = numeric_inputs(wm.kvaf, b.actions) if numeric else kvaf_branch_for(wm, b.kvaf, [i])
        extra = Conditioning({KVAF: inputs})
    with torch.no_grad():
        video = wm.generate(b.video[:, 0], b.actions, steps=sample_steps, seeds=[i], conditioning=extra)
    to8 = lambda v: unit_to_uint8(signed_to_unit(v))  # noqa: E731
    return to8(b.video[0]), to8(video[0]), to8(b.kvaf[0])


def _evaluate(wm: WorldModel, test: KvafClips, sides: Side, args: argparse.Namespace) -> dict:
    """Generate every held-out clip from its first frame and its actions (and KVAF) and score it."""
    n = min(args.eval_clips, len(test))
    picks = np.linspace(0, len(test) - 1, n).round().astype(int)
    gts, preds, arm, segs, block_segs, statics, ee = [], [], [], [], [], [], []
    for i, idx in enumerate(picks):
        item = test[int(idx)]
        gt, pred, kvaf = _generate(wm, item, i, args.sample_steps)
        side = sides.clip(item)
        gts.append(gt)
        preds.append(pred)
        arm.append(_arm_psnr(gt, pred, kvaf))
        segs.append(side["seg"])
        block_segs.append(np.where(np.isin(side["seg"], side["blocks"]), side["seg"], -1))
        statics.append(side["static_ids"])
        ee.append(_ee_scores(gt, pred, side, args.ee_radius, args.min_area))
    gts, preds, h = np.stack(gts), np.stack(preds), str(args.horizon)
    common = dict(horizons=[args.horizon], progress=False, min_area=args.min_area)
    res = evaluate(
        gts, preds, metrics=["psnr", "ssim", "scs"], structures="segmentation", segmentation=np.stack(segs),
        static_ids=statics, **common,
    )  # fmt: skip
    traj = [_block_traj(g, p, seg, args) for g, p, seg in zip(gts, preds, block_segs)]
    ee_arr = np.array(ee, np.float64)
    nanmean = lambda a: float(np.nanmean(a)) if np.isfinite(a).any() else None  # noqa: E731
    return {
        "psnr": res["aggregate"]["psnr"][h],
        "ssim": res["aggregate"]["ssim"][h],
        "scs": res["aggregate"]["scs"][h],
        "traj_block": nanmean(np.array([t[0] for t in traj], np.float64)),
        "traj_block_clips_scored": int(sum(np.isfinite(t[0]) for t in traj)),
        "traj_ee": nanmean(ee_arr[:, 0]),
        "traj_ee_exact": nanmean(ee_arr[:, 1]),
        "traj_ee_exact_gt_ceiling": nanmean(ee_arr[:, 2]),
        "ee_clips_scored": int(np.isfinite(ee_arr[:, 0]).sum()),
        "arm_psnr": float(np.mean(arm)),
        "clips": [int(i) for i in picks],
        "traj_block_scored_ids": [t[1] for t in traj],
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _step_time(train_ds: KvafClips, args: argparse.Namespace, conditioning: str, repeats: int = 6) -> float:
    """Seconds per training step (loss + backward) of a fresh tiny model on one batch."""
    torch.manual_seed(args.seed)
    wm = WorldModel.from_preset("wan2.1-tiny", "ee7", conditioning=conditioning)
    batch = Batch.from_collated(default_collate([train_ds[i] for i in range(args.batch_size)]))
    times = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        wm.loss(batch, generator=torch.Generator().manual_seed(r)).backward()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # 1. the store: train episodes and held-out scenes
        store = args.store or simulate(
            "manip",
            Path(tmp) / "store",
            episodes=args.episodes,
            test_episodes=args.test_episodes,
            frames=args.frames,
            size=64,
            seed=args.seed,
            progress=False,
        )
        clip = dict(context=1, horizon=args.horizon, size=args.size)
        train_ds = KvafClips(ClipDataset(store, split="train", **clip))
        test_ds = KvafClips(ClipDataset(store, split="test", **clip))
        sides = Side(store, test_ds, args.size)
        data_facts = {
            "train_clips": len(train_ds),
            "test_clips": len(test_ds),
            "train_split": "train",
            "eval_split": "test (held-out scenes)",
            "store_seed": args.seed,
        }
        # 2. train every variant on the same budget; 3. score it on the held-out scenes
        table = {}
        for name, (conditioning, passive, overrides) in VARIANTS.items():
            cfg = TrainConfig(
                out=str(Path(tmp) / name),
                model="wan2.1-tiny",
                conditioning=conditioning,
                passive=passive,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                checkpoint_every=0,
                log_every=10,
                cpu=True,
                threads=1,
                seed=args.seed,
                schedule="constant",
                model_overrides=overrides,
                **clip,
            )
            result = train(cfg, dataset=train_ds, progress=False)
            wm = WorldModel.load(result.final_dir).eval()
            scores = _evaluate(wm, test_ds, sides, args)
            table[name] = {**scores, "final_loss": float(np.mean(result.losses[-10:])), "train_s": result.seconds}
            shown = ("psnr", "ssim", "scs", "traj_block", "traj_ee", "traj_ee_exact", "arm_psnr")
            print(f"{name:15s}", " ".join(f"{k} {_fmt(scores[k])}" for k in shown), flush=True)
        # 4. step time of the KVAF model over the EgoWM model at the same size
        step = {c: _step_time(train_ds, args, c) for c in ("actions", "kvaf", "kvaf+actions")}
    record = {
        "benchmark": "kvaf_compare",
        "table": table,
        "step_time_s": step,
        "kvaf_over_actions_step_time": step["kvaf"] / step["actions"],
        "wall_s": time.time() - t_start,
        "fingerprint": {
            "actwm_version": actwm.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "settings": {**vars(args), "model": "wan2.1-tiny", "store": str(args.store or "simulated (temporary)")},
            "data": data_facts,
        },
    }
    atomic_write_json(args.json, record)
    print(f"KVAF step time over EgoWM: {record['kvaf_over_actions_step_time']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
