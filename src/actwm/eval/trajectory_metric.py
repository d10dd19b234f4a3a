"""The `traj` metric of `actwm eval` / `evaluate(...)`: trajectory accuracy per sequence and horizon.

The objects are those of the simulator's segmentation (`segmentation.npy` side file, or
`evaluate(..., segmentation=...)`) on the last context frame (or the `object_ids` given). Their tracks are
mask centroids per frame:

* prediction: the objects' masks tracked through the predicted frames by a mask tracker (classical flow
  tracker by default, `tracker="sam2"` for SAM 2), started from the segmentation masks on that frame (the
  context frame is shared by both videos);
* ground truth (`gt_source`): "tracker" (default, WorldArena's way: the same tracker on the ground-truth
  video, so a prediction equal to the ground truth scores exactly 1 and tracker errors hit both sides
  alike) or "segmentation" (the simulator's own masks on every frame: exact, but then even a perfect
  prediction carries the tracker's drift).

Horizon h scores the tracks over the last context frame and the predicted frames `context .. context+h-1`
with `actwm.eval.trajectory.trajectory_accuracy` (WorldArena's normalised DTW mapped to [0, 1]; higher is
better). A track is one number per sequence, so the "at frame h" value is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actwm.eval.prompts import structures_from_segmentation
from actwm.eval.sequences import SequencePair
from actwm.eval.tracker_base import MaskTracker
from actwm.eval.trackers import get_tracker
from actwm.eval.trajectory import centroid_tracks, trajectory_accuracy

__all__ = ["TrajectoryMetric", "parse_ids"]


def parse_ids(ids: Any) -> list[int] | None:
    """`object_ids` option: None, an int, a list of ints or a comma string ("3,5") -> list of ints."""
    if ids is None:
        return None
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    if isinstance(ids, str):
        try:
            return [int(x) for x in ids.split(",") if x.strip()]
        except ValueError as exc:
            raise ValueError(f"traj: object_ids must be integers, got {ids!r}") from exc
    return [int(x) for x in ids]


@dataclass
class TrajectoryMetric:
    """`metric.score_pair(pair, context, horizons) -> (per horizon, at (None), info)`; kind "sequence"."""

    tracker: MaskTracker = field(repr=False)
    select: str = "farthest"
    object_ids: list[int] | None = None
    min_area: int = 16
    max_objects: int = 8
    gt_source: str = "tracker"
    name: str = field(default="traj", init=False)
    higher_is_better: bool = field(default=True, init=False)
    kind: str = field(default="sequence", init=False)

    def __post_init__(self) -> None:
        if self.select not in ("farthest", "mean"):
            raise ValueError(f"traj: select must be 'farthest' or 'mean', got {self.select!r}")
        if self.gt_source not in ("tracker", "segmentation"):
            raise ValueError(f"traj: gt_source must be 'tracker' or 'segmentation', got {self.gt_source!r}")
        if self.min_area < 1 or self.max_objects < 1:
            raise ValueError(f"traj: min_area and max_objects must be >= 1, got {self.min_area}, {self.max_objects}")

    def tracks(self, pair: SequencePair, context: int, length: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """`(gt (L, K, 2), pred (L, K, 2), ids)` pixel tracks over frames `context-1 .. context-2+length`."""
        if "segmentation" not in pair.extras:
            raise ValueError(f"needs the ground-truth segmentation: {pair.side_hint('segmentation')}")
        anchor = context - 1
        seg = pair.extras["segmentation"][anchor : anchor + length]
        masks0, ids = structures_from_segmentation(seg[0], min_area=self.min_area, max_objects=None)
        if self.object_ids is not None:
            missing = sorted(set(self.object_ids) - set(ids))
            if missing:
                raise ValueError(f"object id(s) {missing} not on frame {anchor} (>= {self.min_area} px)")
            keep = [ids.index(i) for i in self.object_ids]
        else:
            keep = list(range(min(len(ids), self.max_objects)))
        if not keep:
            raise ValueError(f"no segmented object of >= {self.min_area} px on frame {anchor}")
        ids = [ids[k] for k in keep]
        masks0 = masks0[keep]
        if self.gt_source == "segmentation":
            gt = centroid_tracks(np.stack([seg == i for i in ids], axis=1))
        else:
            gt = centroid_tracks(self.tracker.track(pair.gt[anchor : anchor + length], masks0))
        pred_masks = self.tracker.track(pair.pred[anchor : anchor + length], masks0)
        return gt, centroid_tracks(pred_masks), ids

    def score_pair(self, pair: SequencePair, context: int, horizons: list[int]) -> tuple[dict, dict, dict]:
        try:
            gt, pred, ids = self.tracks(pair, context, max(horizons) + 1)
            size = pair.gt.shape[1:3]
            scores, dists, chosen = {}, {}, {}
            for h in horizons:
                res = trajectory_accuracy(gt[: h + 1], pred[: h + 1], size, select=self.select)
                scores[str(h)], dists[str(h)] = res.score, res.distance
                chosen[str(h)] = [ids[k] for k in res.objects]
        except ValueError as exc:
            text = str(exc).removeprefix("traj: ")
            raise ValueError(f"sequence {pair.name!r}: traj: {text}") from exc
        info = {
            "tracker": self.tracker.name,
            "object_ids": ids,
            "scored_ids": chosen,
            "dtw_distance": dists,
            "select": self.select,
            "gt_source": self.gt_source,
            "mapping": "min(1, 1 / (40.854 * d)), d = DTW cost / path length in (u/W, v/H) units (WorldArena)",
        }
        return scores, {str(h): None for h in horizons}, info


def build_traj(
    resize: int | None = None,
    tracker: str = "classical",
    select: str = "farthest",
    object_ids: Any = None,
    min_area: int = 16,
    max_objects: int = 8,
    gt_source: str = "tracker",
) -> TrajectoryMetric:
    """Factory for the metric registry. `resize` is accepted and ignored: tracks are normalised by the
    image size, and the tracker runs on the native frames."""
    if tracker not in ("classical", "sam2"):
        raise ValueError(f"traj: tracker must be 'classical' or 'sam2', got {tracker!r}")
    return TrajectoryMetric(get_tracker(tracker), select, parse_ids(object_ids), min_area, max_objects, gt_source)
