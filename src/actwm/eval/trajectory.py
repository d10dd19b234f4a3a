"""Trajectory accuracy (WorldArena's "Trajectory Accuracy"): normalised DTW between 2-D object tracks.

What WorldArena does (repo WorldArena, `video_quality/WorldArena/trajectory_accuracy.py` and the
normalisation table in its `__init__.py`), and what this module does the same way:

1. Tracks are 2-D points per frame in **normalised image coordinates** `(u / W, v / H)` (WorldArena detects
   the gripper with SAM3 at 640x480 and stores `x / 640, y / 480`). Missing points (object not found) are
   filled by linear interpolation between the nearest found frames (held constant before the first / after
   the last); a track missing in more than 90 % of its frames is invalid.
2. Of the ground-truth tracks, the one with the largest spatial extent (largest distance between two of its
   points) is scored; `select="mean"` averages all valid ground-truth tracks instead (ours, optional).
3. DTW with the Euclidean point distance between the predicted and the ground-truth track; the mean cost
   per step of the warping path is `d = DTW cost / path length` (in normalised image units).
4. Raw score `ndtw = 1 / d`; WorldArena maps it to [0, 1] linearly with its empirical bound 40.854 and
   clips: `score = min(1, (1 / d) / 40.854)`, i.e. `score = 1` when `d <= 1 / 40.854 = 0.0245` (the
   points are on average within ~2.4 % of the image size) and `score = 0.0245 / d` beyond. `d = 0`
   (identical tracks) scores 1; an invalid predicted track scores 0.

Differences from WorldArena, all stated here: we compute exact DTW (WorldArena uses `fastdtw`, an
approximation with radius 1); ground-truth tracks are the simulator's segmentation centroids (not a detector
on the ground-truth video); predicted tracks come from our mask trackers (`actwm.eval.trackers`) started
from the ground-truth masks on the last context frame, or are given as arrays (e.g. end-effector pixels).

Functions here take pixel tracks `(T, K, 2)` (`u, v` in OpenCV pixel convention, NaN = not found) and the
image size, so the normalisation is in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from actwm.io import read_json

__all__ = [
    "WORLDARENA_NDTW_MAX",
    "MISSING_LIMIT",
    "dtw",
    "fill_track",
    "ndtw_score",
    "track_extent",
    "TrajectoryResult",
    "trajectory_accuracy",
    "centroid_tracks",
    "landmark_tracks",
]

WORLDARENA_NDTW_MAX = 40.854  # WorldArena's empirical upper bound of the raw 1/d ("trajectory_accuracy" max)
MISSING_LIMIT = 0.9  # a track missing in more than this fraction of its frames is invalid (as WorldArena)


def dtw(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Exact dynamic time warping with the Euclidean point distance.

    Args:
        a: `(N, D)` points, b: `(M, D)` points (no NaN).
    Returns:
        `(cost, path_length)`: the minimal sum of point distances along a monotone warping path from
        `(0, 0)` to `(N-1, M-1)` (steps (1,0), (0,1), (1,1)) and the number of pairs on that path (ties
        broken towards the diagonal step).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"dtw: expected non-empty (N, D) and (M, D) point arrays, got {a.shape} and {b.shape}")
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    n, m = dist.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), np.int64)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = ((acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]))
            prev += ((acc[i, j - 1], steps[i, j - 1]),)
            best = min(range(3), key=lambda k: prev[k][0])  # first minimum: diagonal wins ties
            acc[i, j] = dist[i - 1, j - 1] + prev[best][0]
            steps[i, j] = prev[best][1] + 1
    return float(acc[n, m]), int(steps[n, m])


def fill_track(track: np.ndarray) -> tuple[np.ndarray, bool]:
    """Fill missing (NaN) points of one track `(T, 2)`: linear between found frames, held at the ends.

    Returns `(filled (T, 2), valid)`; `valid` is False (and the track returned unchanged) when more than
    `MISSING_LIMIT` of the frames are missing.
    """
    track = np.asarray(track, np.float64)
    found = np.isfinite(track).all(axis=-1)
    if found.sum() == 0 or 1.0 - found.mean() > MISSING_LIMIT:
        return track, False
    t = np.arange(len(track))
    filled = np.stack([np.interp(t, t[found], track[found, k]) for k in range(track.shape[1])], axis=-1)
    return filled, True


def track_extent(track: np.ndarray) -> float:
    """Largest distance between two points of a track `(T, 2)` (WorldArena's "farthest distance")."""
    track = np.asarray(track, np.float64)
    return float(np.linalg.norm(track[:, None] - track[None], axis=-1).max()) if len(track) > 1 else 0.0


def ndtw_score(distance: float) -> float:
    """WorldArena's [0, 1] score of a mean DTW step cost `d` (normalised units): `min(1, 1 / (40.854 d))`."""
    if not math.isfinite(distance) or distance < 0:
        raise ValueError(f"ndtw_score: distance must be finite and >= 0, got {distance}")
    return 1.0 if distance * WORLDARENA_NDTW_MAX <= 1.0 else 1.0 / (WORLDARENA_NDTW_MAX * distance)


@dataclass
class TrajectoryResult:
    """Score of one sequence. `score` in [0, 1] (higher is better); `distance`: mean DTW step cost of the
    scored track(s) in normalised image units (None when the prediction's track is invalid);
    `objects`: the ground-truth track indices scored; `per_object`: `{index: (score, distance)}`."""

    score: float
    distance: float | None
    objects: list[int]
    per_object: dict[int, tuple[float, float | None]] = field(default_factory=dict)


def _normalised(tracks: Any, size: tuple[int, int], what: str) -> np.ndarray:
    arr = np.asarray(tracks, np.float64)
    if arr.ndim == 2 and arr.shape[-1] == 2:
        arr = arr[:, None]
    if arr.ndim != 3 or arr.shape[-1] != 2 or len(arr) == 0:
        raise ValueError(f"{what}: expected pixel tracks (T, K, 2) or (T, 2), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{what}: tracks hold infinite values (use NaN for a point not found)")
    h, w = size
    return arr / np.array([w, h], np.float64)


def trajectory_accuracy(
    gt_tracks: Any,
    pred_tracks: Any,
    size: tuple[int, int],
    select: Literal["farthest", "mean"] = "farthest",
) -> TrajectoryResult:
    """WorldArena's trajectory accuracy of predicted tracks against ground-truth tracks (module docstring).

    Args:
        gt_tracks: `(T, K, 2)` or `(T, 2)` pixel coordinates `(u, v)` of K objects; NaN = not found.
        pred_tracks: `(T', K, 2)` or `(T', 2)`, the same K objects in the same order (T' may differ: DTW).
        size: `(H, W)` of the images, for the normalisation `(u / W, v / H)`.
        select: "farthest" (WorldArena: the ground-truth track of largest extent) or "mean" (all of them).
    Raises:
        ValueError: bad shapes, different K, or no valid ground-truth track.
    """
    if select not in ("farthest", "mean"):
        raise ValueError(f"traj: select must be 'farthest' or 'mean', got {select!r}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"traj: size must be (H, W) > 0, got {size}")
    gt, pred = _normalised(gt_tracks, size, "gt_tracks"), _normalised(pred_tracks, size, "pred_tracks")
    if gt.shape[1] != pred.shape[1]:
        raise ValueError(f"traj: gt has {gt.shape[1]} track(s) but pred has {pred.shape[1]}")
    filled_gt = [fill_track(gt[:, k]) for k in range(gt.shape[1])]
    valid = [k for k, (_, ok) in enumerate(filled_gt) if ok]
    if not valid:
        raise ValueError(f"traj: no ground-truth track is found in at least {1 - MISSING_LIMIT:.0%} of its frames")
    if select == "farthest":
        objects = [max(valid, key=lambda k: (track_extent(filled_gt[k][0]), -k))]
    else:
        objects = valid
    per_object: dict[int, tuple[float, float | None]] = {}
    for k in objects:
        track, ok = fill_track(pred[:, k])
        if not ok:
            per_object[k] = (0.0, None)
            continue
        cost, length = dtw(track, filled_gt[k][0])
        d = cost / length
        per_object[k] = (ndtw_score(d), d)
    scores = [s for s, _ in per_object.values()]
    dists = [d for _, d in per_object.values() if d is not None]
    distance = float(np.mean(dists)) if len(dists) == len(scores) else None
    return TrajectoryResult(float(np.mean(scores)), distance, objects, per_object)


def centroid_tracks(masks: np.ndarray) -> np.ndarray:
    """Mask centroids: `(T, K, H, W)` bool -> `(T, K, 2)` pixel `(u, v)`, NaN where a mask is empty."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 4:
        raise ValueError(f"centroid_tracks: expected (T, K, H, W) masks, got shape {masks.shape}")
    area = masks.sum(axis=(-2, -1)).astype(np.float64)
    h, w = masks.shape[-2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (masks.sum(axis=-2) * np.arange(w)).sum(-1) / area
        v = (masks.sum(axis=-1) * np.arange(h)).sum(-1) / area
    out = np.stack([u, v], axis=-1)
    out[area == 0] = np.nan
    return out


def landmark_tracks(
    landmarks: Any, points: Literal["ee", "joints", "all"] = "ee"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixel tracks from a KVAF landmarks file (`actwm kvaf render --landmarks-json`) or its parsed dict.

    Layout: `{"size": [H, W], "frames": [{"joints": [[u, v] | null, ...], "ee": [u, v] | null}, ...]}`.
    Returns `((T, K, 2) tracks with NaN for null points, (H, W))`; K = 1 for "ee", the joint count for
    "joints", both (end-effector first) for "all". Score two of them with `trajectory_accuracy`.
    """
    where = str(landmarks) if isinstance(landmarks, (str, Path)) else "landmarks"
    data = read_json(Path(landmarks)) if isinstance(landmarks, (str, Path)) else landmarks
    if points not in ("ee", "joints", "all"):
        raise ValueError(f"landmark_tracks: points must be 'ee', 'joints' or 'all', got {points!r}")
    try:
        size = (int(data["size"][0]), int(data["size"][1]))
        rows = []
        for frame in data["frames"]:
            marks = ([frame["ee"]] if points != "joints" else []) + (list(frame["joints"]) if points != "ee" else [])
            rows.append([[np.nan, np.nan] if m is None else [float(m[0]), float(m[1])] for m in marks])
        tracks = np.array(rows, np.float64)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"{where}: expected {{'size': [H, W], 'frames': [{{'joints', 'ee'}}, ...]}} ({exc})") from exc
    if tracks.ndim != 3 or tracks.shape[-1] != 2 or len(tracks) == 0:
        raise ValueError(f"{where}: frames must hold the same number of [u, v] points each, got shape {tracks.shape}")
    return tracks, size
