"""KVAF vs numeric actions (EgoWM injection) vs KVAF + actions vs no actions on `manip` (EA-WM 4.3 in small).

Each variant is the tiny Wan 2.1 world model trained with the same step budget, batch, lr and seed on the same
simulated manip episodes, then scored on held-out scenes (the store's `test` split: disjoint scene seeds) with
PSNR / SSIM (`actwm.eval.engine.evaluate`) and an arm-region PSNR (pixels within 2 px of the ground-truth arm's
KVAF drawing: how well the commanded arm motion is imagined). Also measured: the training step time of the KVAF
model over the EgoWM (actions) model at the same size.

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
from actwm.eval.engine import evaluate
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
    return ap


def _arm_psnr(gt: np.ndarray, pred: np.ndarray, kvaf: np.ndarray) -> float:
    """PSNR over frames 1.. within 2 px of the drawn arm; arrays `(T, H, W, 3)` uint8."""
    mask = np.stack([cv2.dilate((k.max(-1) > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) for k in kvaf]) > 0
    mask[0] = False
    err = ((gt.astype(np.float64) - pred.astype(np.float64)) ** 2).mean(-1)[mask]
    return float(10 * np.log10(255.0**2 / max(err.mean(), 1e-10))) if err.size else float("nan")


def _evaluate(wm: WorldModel, test: KvafClips, args: argparse.Namespace) -> dict:
    """Generate every held-out clip from its first frame and its actions (and KVAF) and score it."""
    n = min(args.eval_clips, len(test))
    picks = np.linspace(0, len(test) - 1, n).round().astype(int)
    gts, preds, arm = [], [], []
    for i, idx in enumerate(picks):
        b = Batch.from_collated(default_collate([test[int(idx)]]))
        extra = None
        if wm.kvaf is not None:
            numeric = wm.kvaf.numeric is not None
            inputs = numeric_inputs(wm.kvaf, b.actions) if numeric else kvaf_branch_for(wm, b.kvaf, [i])
            extra = Conditioning({KVAF: inputs})
        with torch.no_grad():
            video = wm.generate(b.video[:, 0], b.actions, steps=args.sample_steps, seeds=[i], conditioning=extra)
        gt, pred = unit_to_uint8(signed_to_unit(b.video[0])), unit_to_uint8(signed_to_unit(video[0]))
        gts.append(gt)
        preds.append(pred)
        arm.append(_arm_psnr(gt, pred, unit_to_uint8(signed_to_unit(b.kvaf[0]))))
    res = evaluate(np.stack(gts), np.stack(preds), metrics=["psnr", "ssim"], horizons=[args.horizon], progress=False)
    h = str(args.horizon)
    return {
        "psnr": res["aggregate"]["psnr"][h],
        "ssim": res["aggregate"]["ssim"][h],
        "arm_psnr": float(np.mean(arm)),
        "clips": [int(i) for i in picks],
    }


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
            scores = _evaluate(wm, test_ds, args)
            table[name] = {**scores, "final_loss": float(np.mean(result.losses[-10:])), "train_s": result.seconds}
            print(f"{name:13s} psnr {scores['psnr']:.2f} ssim {scores['ssim']:.3f} arm_psnr {scores['arm_psnr']:.2f}")
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
