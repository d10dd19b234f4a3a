"""The evaluation engine as a library: `evaluate` on tensors equals `actwm eval` on the same frames written
to disk, and horizon h means the predicted frames 1..h, checked against values computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from actwm import cli as actwm_cli
from actwm.eval.engine import EvalConfig, evaluate
from actwm.io import atomic_write_json
from actwm.pixels import uint8_to_unit
from actwm.rollout.cli import write_video_set


def eval_main(argv: list[str]) -> int:
    """`actwm eval ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["eval", *argv])


T, SIZE = 9, 32


def scene(seed: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a 10 px box moving right; `shift` offsets the box in frames >= 1.
    Returns frames `(T, H, W, 3)` uint8 and segmentation `(T, H, W)` (box id 7, a floor band id 5, background
    2); only the box is listed as static in the tests, so ignoring `static_ids` changes the structures."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 200, (SIZE // 4, SIZE // 4, 3)).repeat(4, 0).repeat(4, 1).astype(np.uint8)
    frames = np.repeat(bg[None], T, 0)
    seg = np.full((T, SIZE, SIZE), 2, np.int32)
    frames[:, 24:, :] = (40, 160, 60)
    seg[:, 24:, :] = 5
    for t in range(T):
        x = 3 + t + (shift if t else 0)
        frames[t, 10:20, x : x + 10] = (220, 30, 30)
        seg[t, 10:20, x : x + 10] = 7
    return frames, seg


def test_in_memory_equals_from_disk(tmp_path):
    """Frames written as `actwm rollout` writes them (PNG folders + side files) and scored by `actwm eval`
    give exactly the numbers `evaluate` gives on the same frames in memory."""
    names = ["a", "b", "c"]
    gts, preds, segs = [], [], []
    for i, name in enumerate(names):
        gt, seg = scene(i)
        pred, _ = scene(i + 10, shift=i)
        pred[0] = gt[0]  # a rollout starts from the given frame
        gts.append(gt), preds.append(pred), segs.append(seg)
        write_video_set(tmp_path, "gt", name, gt, fps=4)
        write_video_set(tmp_path, "pred", name, pred, fps=4)
        np.save(tmp_path / "gt" / name / "segmentation.npy", seg)
        atomic_write_json(tmp_path / "gt" / name / "meta.json", {"static_ids": [7]})
    out = tmp_path / "res.json"
    args = ["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--json", str(out), "--no-progress"]
    args += ["--metrics", "psnr,ssim,scs", "--horizons", "1,3,8", "--structures", "segmentation", "--trim", "flow"]
    assert eval_main(args) == 0
    disk = json.loads(out.read_text())
    cfg = EvalConfig(
        metrics=["psnr", "ssim", "scs"], horizons=[1, 3, 8], structures="segmentation", trim="flow", progress=False
    )
    # a batch of float frames in [0, 1] (the metrics' convention) off the uint8 grid by < half a level (they round
    # to the written PNGs), names and side data in the same layout
    jitter = torch.empty(len(names), T, 3, SIZE, SIZE).uniform_(-0.45 / 255, 0.45 / 255, generator=torch.Generator())
    memory = evaluate(
        uint8_to_unit(np.stack(gts)),
        (uint8_to_unit(np.stack(preds)) + jitter).clamp(0, 1),
        cfg,
        names=names,
        segmentation=np.stack(segs),
        static_ids=[7],
    )
    memory = json.loads(json.dumps(memory))  # same float -> JSON round trip as the file
    for key in ("aggregate", "aggregate_at", "sequences"):
        assert memory[key] == disk[key], key  # every number, exactly
    assert {k: v for k, v in memory["meta"].items() if k not in ("gt", "pred")} == {
        k: v for k, v in disk["meta"].items() if k not in ("gt", "pred")
    }
    assert all(disk["sequences"][n]["scs_info"]["object_ids"] == [7] for n in names)  # side data was used
    # a dict of uint8 videos, predictions without the context frame: the same numbers
    again = evaluate(
        dict(zip(names, gts)),
        {n: p[1:] for n, p in zip(names, preds)},
        cfg,
        segmentation=dict(zip(names, segs)),
        static_ids={n: [7] for n in names},
    )
    assert json.loads(json.dumps(again["aggregate"])) == disk["aggregate"]


def test_horizon_is_the_mean_over_predicted_frames_1_to_h():
    """Frame t of the prediction is the ground truth plus d_t grey levels (d_0 = 0: frame 0 is given):
    PSNR_t = 20 log10(255 / d_t) exactly; horizon h must average frames 1..h, not 0..h-1."""
    rng = np.random.default_rng(0)
    gt = rng.integers(40, 200, (6, SIZE, SIZE, 3)).astype(np.uint8)
    d = [0, 2, 5, 9, 14, 20]
    pred = np.stack([gt[t] + np.uint8(d[t]) for t in range(6)])
    res = evaluate(gt, pred, metrics=["psnr", "ssim"], horizons=[1, 2, 5], progress=False)
    seq = res["sequences"]["seq000"]
    psnr = [None] + [20 * math.log10(255 / d[t]) for t in range(1, 6)]
    ssim = [
        structural_similarity(
            gt[t] / 255.0,
            pred[t] / 255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        for t in range(6)
    ]
    for h in (1, 2, 5):
        assert seq["psnr"][str(h)] == pytest.approx(np.mean(psnr[1 : h + 1]), abs=1e-4)
        assert seq["at"]["psnr"][str(h)] == pytest.approx(psnr[h], abs=1e-4)
        assert seq["ssim"][str(h)] == pytest.approx(np.mean(ssim[1 : h + 1]), abs=1e-5)
        assert seq["at"]["ssim"][str(h)] == pytest.approx(ssim[h], abs=1e-5)
    assert res["aggregate"]["psnr"]["2"] == pytest.approx((psnr[1] + psnr[2]) / 2, abs=1e-4)


def test_in_memory_bad_input_names_the_argument():
    gt, seg = scene(0)
    with pytest.raises(ValueError, match="pred: no prediction for ground-truth sequence"):
        evaluate({"a": gt}, {"b": gt}, metrics=["psnr"], horizons=[2], progress=False)
    with pytest.raises(ValueError, match="segmentation: 2 entries for 1 sequences"):
        evaluate(gt, gt, metrics=["psnr"], horizons=[2], segmentation=[seg, seg], progress=False)
    with pytest.raises(ValueError, match=r"expected uint8 \(T, H, W, 3\) or float \(T, 3, H, W\)"):
        evaluate(gt.astype(np.float32), gt, metrics=["psnr"], horizons=[2], progress=False)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(torch.full((T, 3, SIZE, SIZE), float("nan")), gt, metrics=["psnr"], horizons=[2], progress=False)
    with pytest.raises(ValueError, match="unknown option"):
        evaluate(gt, gt, metric=["psnr"])
    with pytest.raises(ValueError, match="needs evaluate"):
        evaluate(gt, gt, metrics=["scs"], horizons=[2], structures="segmentation", progress=False)
