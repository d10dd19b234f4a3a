"""Trajectory accuracy (WorldArena's normalised DTW): the maths, the selection, and `traj` in `evaluate`."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from actwm import cli as actwm_cli
from actwm.eval.engine import evaluate
from actwm.eval.trajectory import (
    WORLDARENA_NDTW_MAX,
    centroid_tracks,
    dtw,
    fill_track,
    landmark_tracks,
    ndtw_score,
    trajectory_accuracy,
)
from actwm.eval.trajectory_metric import parse_ids
from actwm.io import read_json


def eval_main(argv: list[str]) -> int:
    """`actwm eval ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["eval", *argv])


def _brute_force_dtw(a: np.ndarray, b: np.ndarray) -> tuple[float, set[int]]:
    """Minimal cost over every monotone warping path (enumerated), and the lengths of the minimal paths."""
    n, m = len(a), len(b)
    best, lengths = np.inf, set()
    steps = [(1, 0), (0, 1), (1, 1)]
    for k in range(n + m):
        for seq in itertools.product(steps, repeat=k):
            i = j = 0
            cost = float(np.linalg.norm(a[0] - b[0]))
            for di, dj in seq:
                i, j = i + di, j + dj
                if i >= n or j >= m:
                    break
                cost += float(np.linalg.norm(a[i] - b[j]))
            else:
                if (i, j) != (n - 1, m - 1):
                    continue
                if cost < best - 1e-12:
                    best, lengths = cost, {k + 1}
                elif abs(cost - best) <= 1e-12:
                    lengths.add(k + 1)
    return best, lengths


def test_dtw_hand_computed():
    # |a_i - b_j| = [[0, 2], [1, 1], [2, 0]]: best path (0,0) (1,0|1) (2,1) costs 0 + 1 + 0 = 1 over 3 pairs
    cost, length = dtw(np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0]]))
    assert cost == pytest.approx(1.0) and length == 3
    # 2-D: a = (0,0) (3,4); b = (0,0) (0,0) (3,4): repeating a point costs nothing, path of 3 pairs
    cost, length = dtw(np.array([[0.0, 0], [3, 4]]), np.array([[0.0, 0], [0, 0], [3, 4]]))
    assert cost == 0.0 and length == 3
    # a single point against two: both pairs on the path, distances 5 and 0
    cost, length = dtw(np.array([[0.0, 0]]), np.array([[3.0, 4], [0, 0]]))
    assert cost == pytest.approx(5.0) and length == 2


def test_dtw_matches_brute_force_enumeration():
    rng = np.random.default_rng(0)
    for n, m in [(3, 4), (4, 3), (4, 4)]:
        a, b = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
        cost, length = dtw(a, b)
        ref_cost, ref_lengths = _brute_force_dtw(a, b)
        assert cost == pytest.approx(ref_cost)
        assert length in ref_lengths


def test_ndtw_mapping_is_worldarenas():
    assert ndtw_score(0.0) == 1.0
    assert ndtw_score(1.0 / WORLDARENA_NDTW_MAX) == 1.0
    assert ndtw_score(0.05) == pytest.approx(1.0 / (40.854 * 0.05))
    assert ndtw_score(0.5) == pytest.approx(1 / 20.427)


def _curve(t: np.ndarray) -> np.ndarray:
    return np.stack([20 + 60 * t, 30 + 25 * np.sin(3 * t)], axis=-1)


def test_identical_perfect_warped_beats_shifted_and_normalisation():
    t = np.linspace(0, 1, 16)
    gt = _curve(t)
    same = trajectory_accuracy(gt, gt, (64, 128))
    assert same.score == 1.0 and same.distance == 0.0
    warped = trajectory_accuracy(gt, _curve(np.linspace(0, 1, 16) ** 2), (64, 128))  # same path, other timing
    shifted = trajectory_accuracy(gt, gt + np.array([12.8, 0.0]), (64, 128))  # 12.8 px = 0.1 W
    assert warped.score > shifted.score and warped.distance < shifted.distance
    # a vertical path shifted sideways by 12.8 px = 0.1 image widths: d = 0.1 exactly, score 1 / 4.0854
    vertical = np.stack([np.full(16, 40.0), np.linspace(5, 60, 16)], axis=-1)
    side = trajectory_accuracy(vertical, vertical + np.array([12.8, 0.0]), (64, 128))
    assert side.distance == pytest.approx(0.1) and side.score == pytest.approx(1 / (40.854 * 0.1))
    # a horizontal path shifted by the same 12.8 px along v: 12.8 / 64 = 0.2 image heights
    horizontal = vertical[:, ::-1].copy()
    assert trajectory_accuracy(horizontal, horizontal + np.array([0.0, 12.8]), (64, 128)).distance == pytest.approx(0.2)


def test_missing_points_filled_and_invalid_prediction_scores_zero():
    track = np.array([[0.0, 0], [np.nan, np.nan], [4, 2], [np.nan, np.nan]])
    filled, ok = fill_track(track)
    assert ok and np.allclose(filled, [[0, 0], [2, 1], [4, 2], [4, 2]])
    gt = _curve(np.linspace(0, 1, 20))
    lost = np.full_like(gt, np.nan)
    lost[0] = gt[0]  # found in 1 of 20 frames: 95 % missing
    res = trajectory_accuracy(gt, lost, (64, 128))
    assert res.score == 0.0 and res.distance is None


def test_farthest_ground_truth_track_is_scored():
    t = np.linspace(0, 1, 10)
    still = np.tile([[100.0, 40.0]], (10, 1))
    gt = np.stack([still, _curve(t)], axis=1)  # object 1 moves, object 0 does not
    pred = np.stack([still + 30.0, _curve(t)], axis=1)  # the moving one is predicted exactly
    res = trajectory_accuracy(gt, pred, (64, 128))
    assert res.objects == [1] and res.score == 1.0
    both = trajectory_accuracy(gt, pred, (64, 128), select="mean")
    assert both.objects == [0, 1] and both.score < 1.0


def test_centroids_of_masks():
    masks = np.zeros((2, 1, 8, 8), bool)
    masks[0, 0, 2:4, 1:4] = True  # rows 2-3, cols 1-3
    assert np.allclose(centroid_tracks(masks)[0, 0], [2.0, 2.5])
    assert np.isnan(centroid_tracks(masks)[1, 0]).all()


# ----------------------------------------------------------------------------------- in the engine


def _scene(path: list[tuple[int, int]], size: int = 48, box: int = 12, seed: int = 0):
    """A textured box moving over a textured background: `(T, H, W, 3)` uint8 and `(T, H, W)` ids (box = 7)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
    texture = rng.integers(130, 256, (box, box, 3), dtype=np.uint8)
    frames = np.repeat(background[None], len(path), axis=0)
    seg = np.full((len(path), size, size), -1, np.int64)
    for t, (x, y) in enumerate(path):
        frames[t, y : y + box, x : x + box] = texture
        seg[t, y : y + box, x : x + box] = 7
    return frames, seg


def test_traj_in_evaluate_perfect_vs_wrong_motion():
    right = [(6 + 3 * t, 18) for t in range(9)]
    down = [(6, min(18 + 3 * t, 34)) for t in range(9)]
    gt, seg = _scene(right)
    wrong, _ = _scene(down)
    kw = dict(metrics=["traj"], horizons=[4, 8], progress=False)
    res = evaluate(gt, gt.copy(), segmentation=seg, **kw)
    assert res["aggregate"]["traj"] == {"4": 1.0, "8": 1.0}
    assert res["meta"]["kinds"]["traj"] == "sequence" and res["meta"]["higher_is_better"]["traj"]
    assert res["sequences"]["seq000"]["traj_info"]["object_ids"] == [7]
    bad = evaluate(gt, wrong, segmentation=seg, **kw)
    assert bad["aggregate"]["traj"]["8"] < 0.5
    # the tracker followed the box in the prediction: its DTW distance is that of the true paths
    gt_c = np.array(right, float) + 5.5
    wrong_c = np.array(down, float) + 5.5
    cost, length = dtw(wrong_c / 48, gt_c / 48)
    assert bad["sequences"]["seq000"]["traj_info"]["dtw_distance"]["8"] == pytest.approx(cost / length, abs=0.01)


def test_traj_needs_segmentation():
    gt, _ = _scene([(6 + 3 * t, 18) for t in range(5)])
    with pytest.raises(ValueError, match="traj: needs the ground-truth segmentation"):
        evaluate(gt, gt, metrics=["traj"], horizons=[4], progress=False)


def test_end_effector_tracks_from_landmarks(tmp_path):
    frames = [{"joints": [[10.0, 20.0], None], "ee": [40.0, 30.0 + 2 * t] if t != 2 else None} for t in range(6)]
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps({"size": [64, 128], "frames": frames}))
    ee, size = landmark_tracks(path)
    assert size == (64, 128) and ee.shape == (6, 1, 2) and np.isnan(ee[2]).all() and ee[5, 0, 1] == 40.0
    every, _ = landmark_tracks(path, "all")
    assert every.shape == (6, 3, 2) and np.isnan(every[:, 2]).all()
    pred = {"size": [64, 128], "frames": [{"joints": [], "ee": [46.4, 30.0 + 2 * t]} for t in range(6)]}
    res = trajectory_accuracy(ee, landmark_tracks(pred)[0], size)  # the gap at t=2 is filled by interpolation
    assert res.distance == pytest.approx(6.4 / 128)
    with pytest.raises(ValueError, match="landmarks"):
        landmark_tracks({"frames": frames})


def test_traj_through_the_cli(tmp_path, capsys):
    right = [(6 + 3 * t, 18) for t in range(9)]
    gt, seg = _scene(right)
    for root, video in (("gt", gt), ("pred", gt)):
        (tmp_path / root / "s0").mkdir(parents=True)
        for t, frame in enumerate(video):
            cv2.imwrite(str(tmp_path / root / "s0" / f"{t:03d}.png"), frame[..., ::-1])
    np.save(tmp_path / "gt" / "s0" / "segmentation.npy", seg)
    out = tmp_path / "res.json"
    argv = ["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--json", str(out), "--no-progress"]
    assert (
        eval_main([*argv, "--metrics", "traj,psnr", "--horizons", "4,8", "--metric-option", "traj.object_ids=7"]) == 0
    )
    res = read_json(out)
    assert res["aggregate"]["traj"] == {"4": 1.0, "8": 1.0}
    assert res["sequences"]["s0"]["traj_info"]["object_ids"] == [7]
    assert eval_main([*argv, "--metrics", "traj", "--horizons", "4", "--metric-option", "traj.object_ids=3"]) == 2
    assert "object id(s) [3] not on frame 0" in capsys.readouterr().err


def test_object_ids_option_forms():
    assert (
        parse_ids("3,5") == [3, 5] and parse_ids(7) == [7] and parse_ids([1, 2]) == [1, 2] and parse_ids(None) is None
    )
    with pytest.raises(ValueError, match="object_ids must be integers"):
        parse_ids("block")


def test_gt_source_tracker_vs_segmentation():
    right = [(6 + 3 * t, 18) for t in range(9)]
    down = [(6, min(18 + 3 * t, 34)) for t in range(9)]
    video, _ = _scene(right)
    _, seg_down = _scene(down)  # the simulator says the box went down; the video shows it going right
    kw = dict(metrics=["traj"], horizons=[8], progress=False, segmentation=seg_down)
    tracked = evaluate(video, video.copy(), **kw)  # default: the same tracker on both videos
    assert tracked["aggregate"]["traj"]["8"] == 1.0
    assert tracked["sequences"]["seq000"]["traj_info"]["gt_source"] == "tracker"
    exact = evaluate(video, video.copy(), metric_options={"traj": {"gt_source": "segmentation"}}, **kw)
    assert exact["aggregate"]["traj"]["8"] < 0.5
