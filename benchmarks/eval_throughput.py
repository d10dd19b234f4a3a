"""Throughput of the evaluation metrics on one CPU core.

SCS: frames per second per tracked object at 128 px with the classical flow tracker, counting every
predicted frame of the sequence once per object (one SCS frame = the object tracked in the ground-truth
AND the predicted frame, plus its IoU); the flow-based trim on the ground truth is timed separately.
Frame metrics (PSNR, SSIM, LPIPS-alex): frames per second at 128 px in batches of 16. LPIPS uses
RANDOM weights: its row is a speed measurement only, not a metric value.
Engine: `actwm.eval.engine.evaluate` (PSNR + SSIM) on 8 sequences in memory vs the same frames as PNG
folders (what `actwm eval` reads): the cost the demo saves by scoring in memory.

    python benchmarks/eval_throughput.py --json bench.json [--size 128] [--frames 17] [--repeats 3]

Target (issue 5): SCS >= 50 frames/s per object on one core at 128 px.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _videos(size: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Ground truth, a prediction (a neighbouring trajectory of the same scene) and frame-0 structures."""
    try:
        from actwm.eval.prompts import structures_from_segmentation
        from actwm.sim import record_episode

        gt = record_episode("nav", seed=1000001, frames=frames, size=size)
        pred = record_episode("nav", seed=1000001, frames=frames, size=size, policy_seed=7)
        masks, _ = structures_from_segmentation(
            gt.extras["segmentation"][0],
            static_ids=gt.meta["static_ids"],
            min_area=size * size // 100,
            max_area_fraction=1.0,
        )
        return gt.frames, pred.frames, masks, "nav simulator, seed 1000001 (prediction: another policy seed)"
    except Exception as exc:  # noqa: BLE001 - the benchmark still runs without the simulator
        import cv2

        rng = np.random.default_rng(0)
        wide = cv2.resize(rng.integers(0, 256, (size // 4, size, 3), dtype=np.uint8), (size * 4, size))
        gt = np.stack([wide[:, 3 * t : 3 * t + size] for t in range(frames)])
        pred = np.stack([wide[:, 4 * t : 4 * t + size] for t in range(frames)])
        masks = np.zeros((4, size, size), bool)
        for j in range(4):
            masks[j, 8 + 24 * j : 28 + 24 * j, 10 + 20 * j : 40 + 20 * j] = True
        return gt, pred, masks, f"synthetic pan (simulator unavailable: {exc})"


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_scs(size: int, frames: int, repeats: int) -> tuple[list[dict], str]:
    from actwm.eval.scs import structural_consistency
    from actwm.eval.trackers import ClassicalFlowTracker, FlowConfig, TrackerConfig
    from actwm.eval.trim import flow_trim_point

    gt, pred, masks, source = _videos(size, frames)
    rows = []
    for label, cfg in [
        ("classical (default)", TrackerConfig()),
        ("classical, no global prior", TrackerConfig(FlowConfig(global_prior=False))),
    ]:
        tracker = ClassicalFlowTracker(cfg)
        for n in sorted({1, min(4, len(masks))}):
            sec = _best(lambda: structural_consistency(gt, pred, masks[:n], tracker), repeats)
            scored = (frames - 1) * n
            rows.append(
                {
                    "metric": "scs",
                    "tracker": tracker.name,
                    "variant": label,
                    "objects": n,
                    "size": size,
                    "frames_per_s_per_object": scored / sec,
                    "seconds": sec,
                }
            )
    sec = _best(lambda: flow_trim_point(gt), repeats)
    rows.append(
        {
            "metric": "scs-trim(flow)",
            "variant": "dense point tracking on GT",
            "size": size,
            "frames_per_s": (frames - 1) / sec,
            "seconds": sec,
        }
    )
    return rows, source


def bench_frame_metrics(size: int, repeats: int) -> list[dict]:
    import torch

    from actwm.eval.lpips import LPIPS
    from actwm.eval.metrics import get_metric

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(16, 3, size, size, generator=gen)
    pred = (gt + 0.05 * torch.randn(16, 3, size, size, generator=gen)).clamp(0, 1)
    rows = []
    for name in ("psnr", "ssim"):
        metric = get_metric(name)
        sec = _best(lambda: metric(gt, pred), repeats)
        rows.append({"metric": name, "size": size, "frames_per_s": 16 / sec, "seconds": sec})
    model = LPIPS("alex").eval()  # RANDOM weights: speed only
    with torch.no_grad():
        sec = _best(lambda: model.distance(gt, pred), repeats)
    rows.append(
        {
            "metric": "lpips-alex",
            "size": size,
            "frames_per_s": 16 / sec,
            "seconds": sec,
            "weights": "RANDOM (speed only)",
        }
    )
    return rows


def bench_engine(size: int, frames: int, repeats: int) -> list[dict]:
    """`evaluate` in memory vs from PNG folders on the same 8 sequences (identical results asserted)."""
    import tempfile
    from pathlib import Path

    from actwm.eval.engine import evaluate
    from actwm.video import write_frames

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (8, frames, size, size, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(np.int16) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    names = [f"s{i}" for i in range(8)]
    opts = dict(metrics=["psnr", "ssim"], horizons=[frames - 1], progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(names):
            write_frames(Path(tmp) / "gt" / n, gt[i])
            write_frames(Path(tmp) / "pred" / n, pred[i])
        memory = evaluate(gt, pred, names=names, **opts)
        disk = evaluate(Path(tmp) / "gt", Path(tmp) / "pred", **opts)
        assert memory["aggregate"] == disk["aggregate"], "in-memory and from-disk results differ"
        for source, fn in (
            ("in memory", lambda: evaluate(gt, pred, names=names, **opts)),
            ("PNG folders", lambda: evaluate(Path(tmp) / "gt", Path(tmp) / "pred", **opts)),
        ):
            sec = _best(fn, repeats)
            rows.append({"metric": "engine psnr+ssim", "variant": source, "sequences": 8, "seconds": sec})
            rows[-1]["frames_per_s"] = 8 * frames / sec
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="write results here")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from actwm.io import atomic_write_json

    scs_rows, source = bench_scs(args.size, args.frames, args.repeats)
    frame_rows = bench_frame_metrics(args.size, args.repeats)
    engine_rows = bench_engine(args.size, args.frames, args.repeats)
    print(f"SCS input: {source}; {args.frames} frames at {args.size} px; 1 thread (cv2, torch)")
    print(f"{'metric':<16} {'variant':<30} {'objects':>7} {'frames/s':>10}")
    for r in scs_rows:
        rate = r.get("frames_per_s_per_object", r.get("frames_per_s"))
        unit = "/object" if "frames_per_s_per_object" in r else ""
        print(f"{r['metric']:<16} {r.get('variant', ''):<30} {r.get('objects', ''):>7} {rate:>10.1f} {unit}")
    for r in frame_rows:
        note = "  (RANDOM weights: speed only)" if "weights" in r else ""
        print(f"{r['metric']:<16} {'batch of 16':<30} {'':>7} {r['frames_per_s']:>10.1f}{note}")
    for r in engine_rows:
        print(f"{r['metric']:<16} {r['variant']:<30} {'':>7} {r['frames_per_s']:>10.1f}")
    default = [r for r in scs_rows if r["metric"] == "scs" and r["variant"] == "classical (default)"]
    best = max(r["frames_per_s_per_object"] for r in default)
    single = [r for r in default if r["objects"] == 1][0]["frames_per_s_per_object"]
    target = {
        "scs_frames_per_s_per_object": 50.0,
        "measured_single_object": single,
        "measured_best": best,
        "met": single >= 50.0,
    }
    print(
        f"target >= 50 frames/s per object: single object {single:.1f}, {max(r['objects'] for r in default)} "
        f"objects {best:.1f}"
    )
    atomic_write_json(
        args.json,
        {
            "source": source,
            "threads": 1,
            "scs": scs_rows,
            "frame_metrics": frame_rows,
            "engine": engine_rows,
            "target": target,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
