"""The Structural Consistency Score (SCS) of EgoWM (section 4, Eq. 7, appendix A).

SCS asks whether the *structure* of a predicted video moves the way the real scene does under the same
actions, independent of texture and sharpness:

1. trim the sequence at the first frame where no point visible in the first frame is still in view
   (`actwm.eval.trim`); frames from there on are excluded;
2. select static structures in the first ground-truth frame (`actwm.eval.prompts`: user prompts,
   simulator segmentation or automatic);
3. track every structure's mask through the ground-truth video and, starting from the *same* first-frame
   masks, through the predicted video, with the same tracker (`actwm.eval.trackers`);
4. SCS = 100 * mean over the N objects and the kept frames of the mask IoU between the two tracks:

       SCS = 100 / (N T) * sum_j sum_t |M_pred^(t,j) & M_gt^(t,j)| / |M_pred^(t,j) | M_gt^(t,j)|

Frame convention: frames `0 .. context-1` are the given context (the model saw them), tracking starts at
the last context frame `context - 1` (the "first frame" of the paper), and horizon `h` covers the
predicted frames `context .. context + h - 1` (with one context frame: frames 1..h). The "at" value of a
horizon is the score of its last frame alone.

Objects that leave the view. Inside the kept (untrimmed) range an object may still leave the view while
other frame-0 content remains. Its ground-truth mask is then empty. We score mask pairs as:
(empty, empty) -> IoU 1 (the prediction agrees the structure is gone); (empty, non-empty) or
(non-empty, empty) -> 0 (the prediction hallucinates or loses it); otherwise the usual IoU. Every object
counts in every kept frame, so N and T are the same for all terms of Eq. 7. A horizon whose frames are all
trimmed has no score (None / null) and is left out of averages over sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actwm.eval.tracker_base import MaskTracker

__all__ = ["mask_iou", "SCSResult", "structural_consistency", "scores_by_horizon"]


def mask_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of boolean masks over the last two axes; `(..., H, W)` x2 -> `(...)` float64.

    Two empty masks agree perfectly (IoU 1); one empty and one not give 0.
    """
    gt = np.asarray(gt, bool)
    pred = np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: gt {gt.shape} vs pred {pred.shape}")
    inter = (gt & pred).sum(axis=(-2, -1))
    union = (gt | pred).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def scores_by_horizon(
    per_frame: np.ndarray, *, context: int, trim: int, horizons: list[int]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Aggregate a per-frame score into "mean over frames context..context+h-1" and "at frame context+h-1".

    Args:
        per_frame: `(T,)` or `(T, N)` score per frame (and object); frames before `context` are ignored.
        context: number of given context frames.
        trim: first excluded frame index (frames `>= trim` are dropped); use T for no trimming.
        horizons: horizons h >= 1.
    Returns:
        `(mean, at)` dicts keyed by `str(h)`; None where no frame of the horizon survives the trim.
    """
    per_frame = np.asarray(per_frame, np.float64)
    if per_frame.ndim == 1:
        per_frame = per_frame[:, None]
    t_len = len(per_frame)
    mean: dict[str, float | None] = {}
    at: dict[str, float | None] = {}
    for h in horizons:
        if h < 1:
            raise ValueError(f"horizons must be >= 1, got {h}")
        stop = context + h
        if stop > t_len:
            raise ValueError(f"horizon {h} needs {stop} frames (context {context} + {h}) but there are {t_len}")
        kept = per_frame[context : min(stop, trim)]
        mean[str(h)] = float(kept.mean()) if kept.size else None
        at[str(h)] = float(per_frame[stop - 1].mean()) if stop - 1 < trim else None
    return mean, at


@dataclass
class SCSResult:
    """SCS of one sequence.

    Attributes:
        iou: `(T, N)` mask IoU per frame and object (frame indices of the full sequence; rows before the
            anchor frame `context - 1` are NaN).
        trim: first excluded frame (T when nothing is trimmed).
        context: number of context frames.
        tracker: name of the tracker that produced the masks.
        gt_masks, pred_masks: `(T, N, H, W)` bool tracks (rows before the anchor are False).
    """

    iou: np.ndarray
    trim: int
    context: int
    tracker: str
    gt_masks: np.ndarray = field(repr=False)
    pred_masks: np.ndarray = field(repr=False)

    @property
    def num_objects(self) -> int:
        return int(self.iou.shape[1])

    def by_horizon(self, horizons: list[int]) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """SCS (0-100) per horizon: `(mean over frames 1..h, value at frame h)`; None where all trimmed."""
        mean, at = scores_by_horizon(self.iou * 100.0, context=self.context, trim=self.trim, horizons=horizons)
        return mean, at


def structural_consistency(
    gt: np.ndarray,
    pred: np.ndarray,
    masks0: np.ndarray,
    tracker: MaskTracker,
    *,
    context: int = 1,
    trim: int | None = None,
) -> SCSResult:
    """Track `masks0` through both videos and compare the tracks.

    Args:
        gt, pred: `(T, H, W, 3)` uint8 videos of the same shape; frames `0 .. context-1` are context.
        masks0: `(N, H, W)` bool structures selected on ground-truth frame `context - 1`.
        tracker: any `MaskTracker` (the same one tracks both videos).
        context: number of context frames (>= 1).
        trim: first excluded frame index (None: no trimming).
    Returns:
        `SCSResult`; use `.by_horizon(horizons)` for the 0-100 scores.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    masks0 = np.asarray(masks0, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred videos differ in shape: {gt.shape} vs {pred.shape}")
    if gt.ndim != 4 or gt.shape[-1] != 3:
        raise ValueError(f"videos must be (T, H, W, 3), got {gt.shape}")
    if context < 1 or context >= len(gt):
        raise ValueError(f"context must be in [1, T-1] = [1, {len(gt) - 1}], got {context}")
    if masks0.ndim != 3 or masks0.shape[1:] != gt.shape[1:3]:
        raise ValueError(f"masks0 must be (N, H, W) with H, W = {gt.shape[1:3]}, got {masks0.shape}")
    if len(masks0) == 0:
        raise ValueError("no structures to track (masks0 is empty)")
    empty = [j for j in range(len(masks0)) if not masks0[j].any()]
    if empty:
        raise ValueError(f"structure(s) {empty} have an empty first-frame mask")
    t_len = len(gt)
    trim_at = t_len if trim is None else int(min(max(trim, 0), t_len))
    anchor = context - 1
    gt_tracks = tracker.track(gt[anchor:], masks0)
    pred_tracks = tracker.track(pred[anchor:], masks0)
    iou = np.full((t_len, len(masks0)), np.nan)
    iou[anchor:] = mask_iou(gt_tracks, pred_tracks)
    pad = np.zeros((anchor, *gt_tracks.shape[1:]), bool)
    return SCSResult(
        iou=iou,
        trim=trim_at,
        context=context,
        tracker=tracker.name,
        gt_masks=np.concatenate([pad, gt_tracks]),
        pred_masks=np.concatenate([pad, pred_tracks]),
    )
