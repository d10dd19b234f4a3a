"""Structural Consistency Score: known answers on synthetic videos, trim points, horizon bookkeeping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from actwm.eval.scs import mask_iou, scores_by_horizon, structural_consistency
from actwm.eval.trackers import ClassicalFlowTracker
from actwm.eval.trim import depth_trim_point, flow_trim_point


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random colour texture, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (3, 3), 0)


def rect_video(positions, size=64, wh=(20, 16), seed=0):
    """Textured rectangles over a static textured background.

    positions: (T, N, 2) top-left corners per frame. Returns frames (T, H, W, 3) and true masks (T, N, H, W).
    """
    positions = np.asarray(positions)
    t_len, n = positions.shape[:2]
    bg = texture(size, size, seed)
    texs = [texture(wh[1], wh[0], seed + 1 + i) // 2 + 100 for i in range(n)]
    frames = np.repeat(bg[None], t_len, 0)
    masks = np.zeros((t_len, n, size, size), bool)
    for t in range(t_len):
        for i in range(n):
            x0, y0 = positions[t, i]
            xs, ys, xe, ye = max(x0, 0), max(y0, 0), min(x0 + wh[0], size), min(y0 + wh[1], size)
            if xe > xs and ye > ys:
                frames[t, ys:ye, xs:xe] = texs[i][ys - y0 : ye - y0, xs - x0 : xe - x0]
                masks[t, i, ys:ye, xs:xe] = True
    return frames, masks


def straight(start, vel, t_len):
    return np.array([[[sx + vx * t, sy + vy * t] for (sx, sy), (vx, vy) in zip(start, vel)] for t in range(t_len)])


START, VEL = [(8, 10), (36, 34)], [(2, 1), (-1, 1)]


def test_mask_iou_conventions():
    a = np.zeros((2, 8, 8), bool)
    b = np.zeros((2, 8, 8), bool)
    a[0, :4, :4] = True
    b[0, :4, 2:6] = True  # 8 shared of 24
    a[1, :2, :2] = True  # gt present, pred empty
    iou = mask_iou(a, b)
    assert iou[0] == pytest.approx(8 / 24)
    assert iou[1] == 0.0
    assert mask_iou(np.zeros((8, 8), bool), np.zeros((8, 8), bool)) == 1.0  # both empty: agreement
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, b[:1])


def test_identical_videos_score_100():
    frames, masks = rect_video(straight(START, VEL, 9))
    res = structural_consistency(frames, frames.copy(), masks[0], ClassicalFlowTracker())
    mean, at = res.by_horizon([2, 4, 8])
    assert mean == {"2": 100.0, "4": 100.0, "8": 100.0}
    assert at == {"2": 100.0, "4": 100.0, "8": 100.0}
    assert res.num_objects == 2 and res.tracker.startswith("classical-flow")


@pytest.mark.parametrize("shift", [(4, 0), (3, 2)])
def test_shifted_objects_give_analytic_iou(shift):
    t_len = 9
    gt_pos = straight(START, VEL, t_len)
    pred_pos = gt_pos.copy()
    pred_pos[1:] += np.array(shift)  # every predicted frame puts the objects `shift` pixels off
    gt, gt_masks = rect_video(gt_pos)
    pred, pred_masks = rect_video(pred_pos)
    w, h = 20, 16
    dx, dy = shift
    analytic = (w - dx) * (h - dy) / (2 * w * h - (w - dx) * (h - dy)) * 100
    assert mask_iou(gt_masks[1:], pred_masks[1:]).mean() * 100 == pytest.approx(analytic)
    res = structural_consistency(gt, pred, gt_masks[0], ClassicalFlowTracker())
    mean, _ = res.by_horizon([2, 4, 8])
    for h_, v in mean.items():
        assert v == pytest.approx(analytic, abs=2.0), (h_, v, analytic)


def test_object_leaving_view_counts_as_documented():
    """GT object exits on the right at frame 6. Prediction A exits too (both empty -> 1); prediction B keeps
    the object where it started (GT empty, prediction not -> 0)."""
    t_len = 9
    gt_pos = np.array([[[30 + 6 * t, 20]] for t in range(t_len)])  # x >= 64 from t = 6
    gt, gt_masks = rect_video(gt_pos, wh=(16, 16))
    assert not gt_masks[6:].any() and gt_masks[5].any()
    tracker = ClassicalFlowTracker()

    pred_a, _ = rect_video(np.array([[[30 + 7 * t, 20]] for t in range(t_len)]), wh=(16, 16))
    res_a = structural_consistency(gt, pred_a, gt_masks[0], tracker)
    assert not res_a.gt_masks[6:].any() and not res_a.pred_masks[6:].any()
    assert np.all(res_a.iou[6:] == 1.0)

    pred_b, pred_b_masks = rect_video(np.array([[[30, 20]] for t in range(t_len)]), wh=(16, 16))
    res_b = structural_consistency(gt, pred_b, gt_masks[0], tracker)
    assert np.all(res_b.iou[6:] == 0.0)
    expected = mask_iou(gt_masks[1:], pred_b_masks[1:]).mean() * 100  # includes the zeros after the exit
    assert res_b.by_horizon([8])[0]["8"] == pytest.approx(expected, abs=2.0)
    assert res_b.by_horizon([8])[1]["8"] == 0.0


def test_trim_excludes_frames_and_horizon_bookkeeping():
    per_frame = np.array([[np.nan], [90.0], [80.0], [70.0], [60.0], [50.0]])
    mean, at = scores_by_horizon(per_frame, context=1, trim=4, horizons=[1, 2, 4])
    assert mean == {"1": 90.0, "2": 85.0, "4": 80.0}  # frames 1..3 only: frame 4 is trimmed
    assert at == {"1": 90.0, "2": 80.0, "4": None}
    mean, at = scores_by_horizon(per_frame, context=2, trim=6, horizons=[2])
    assert mean == {"2": 75.0} and at == {"2": 70.0}  # context 2: horizon 2 = frames 2..3
    mean, _ = scores_by_horizon(per_frame, context=1, trim=1, horizons=[2])
    assert mean == {"2": None}
    with pytest.raises(ValueError, match="horizon 8 needs 9 frames"):
        scores_by_horizon(per_frame, context=1, trim=6, horizons=[8])


def test_structural_consistency_with_trim_and_context():
    frames, masks = rect_video(straight(START, VEL, 9))
    res = structural_consistency(frames, frames, masks[0], ClassicalFlowTracker(), trim=3)
    assert res.by_horizon([2, 4]) == ({"2": 100.0, "4": 100.0}, {"2": 100.0, "4": None})
    res = structural_consistency(frames, frames, masks[1], ClassicalFlowTracker(), context=2)
    assert np.isnan(res.iou[0]).all() and res.by_horizon([7])[0] == {"7": 100.0}
    with pytest.raises(ValueError, match="empty first-frame mask"):
        structural_consistency(frames, frames, np.zeros((1, 64, 64), bool), ClassicalFlowTracker())
    with pytest.raises(ValueError, match="differ in shape"):
        structural_consistency(frames, frames[:5], masks[0], ClassicalFlowTracker())


def test_flow_trim_point_on_panning_video():
    """A 64 px window slides 8 px per frame over a wide texture: frame-0 content is gone at frame 8."""
    wide = texture(64, 64 * 3, seed=3)
    frames = np.stack([wide[:, 8 * t : 8 * t + 64] for t in range(12)])
    res = flow_trim_point(frames)
    assert res.trim == 8
    assert res.visible[7] > 0 and res.visible[8] == 0
    static = np.repeat(wide[None, :, :64], 6, 0)
    assert flow_trim_point(static).trim == 6  # nothing leaves: no trimming


def _plane_camera(t_len: int, step: float):
    k = np.array([[64.0, 0, 32.0], [0, 64.0, 32.0], [0, 0, 1.0]])
    ext = np.stack([np.array([[1, 0, 0, -step * t], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]) for t in range(t_len)])
    return np.repeat(k[None], t_len, 0), ext


def test_depth_trim_point_exact_geometry():
    """Fronto-parallel plane at z = 2 m, f = 64 px: the 64 px view spans 2 m; moving 0.25 m per frame to
    the right, frame-0 points are all out of view after 8 frames."""
    t_len = 12
    k, ext = _plane_camera(t_len, 0.25)
    depth = np.full((t_len, 64, 64), 2.0)
    res = depth_trim_point(depth, k, ext)
    assert res.trim == 8
    assert res.visible[0] == 64 * 64 and res.visible[4] == 64 * 32 and res.visible[8] == 0
    # an occluder 1 m away covering the whole view at frame 3 hides every frame-0 point
    occluded = depth.copy()
    occluded[3] = 1.0
    assert depth_trim_point(occluded, k, ext).trim == 3
    # far-plane pixels can be ignored, and so can pixels outside a given frame-0 mask
    assert depth_trim_point(depth, k, ext, max_depth=1.5).trim == 0
    right = np.zeros((64, 64), bool)
    right[:, 60:] = True  # the right-most 4 columns stay in view longest, until frame 7
    left = np.zeros((64, 64), bool)
    left[:, :8] = True  # the left-most 8 columns leave at frame 1
    assert depth_trim_point(depth, k, ext, valid0=right).trim == 8
    assert depth_trim_point(depth, k, ext, valid0=left).trim == 1
    with pytest.raises(ValueError, match="extrinsics"):
        depth_trim_point(depth, k, ext[:5])
