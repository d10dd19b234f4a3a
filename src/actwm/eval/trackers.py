"""Video mask trackers for the Structural Consistency Score.

Every tracker follows one interface::

    tracker.track(frames, masks0) -> masks

* `frames`: `(T, H, W, 3)` uint8 RGB video; frame 0 is the frame the masks were drawn on.
* `masks0`: `(N, H, W)` bool, one mask per object on frame 0.
* returns `(T, N, H, W)` bool; `masks[0] == masks0`.

`tracker.name` is a string recorded next to every number the tracker produced.

Two backends:

* `ClassicalFlowTracker`: no weights. Dense optical flow (OpenCV DIS or Farneback) between consecutive
  frames; each object's motion is fitted to the flow of its interior (a homography by default, robust to
  the smeared flow at motion boundaries) or its mask is warped per pixel ("dense"). Pixels mapped from
  outside the image become background, so an object that leaves the view ends up with an empty mask.
* `SAM2Tracker`: the `sam2` package (Meta's Segment Anything 2) video predictor, built from a config and
  a checkpoint file, or from a Hugging Face hub id resolved through the local cache.

The interface lives in `actwm.eval.tracker_base`, the flow in `actwm.eval.flow`, the backends in
`actwm.eval.tracker_classical` and `actwm.eval.tracker_sam2`; this module re-exports their public names and
builds a tracker by name.
"""

from __future__ import annotations

from actwm.eval.flow import FlowConfig, compute_flow, consistent_flow
from actwm.eval.tracker_base import MaskTracker, check_track_inputs
from actwm.eval.tracker_classical import ClassicalFlowTracker, TrackerConfig
from actwm.eval.tracker_sam2 import SAM2_HUB_IDS, SAM2Config, SAM2Tracker

__all__ = [
    "MaskTracker",
    "FlowConfig",
    "TrackerConfig",
    "ClassicalFlowTracker",
    "SAM2Config",
    "SAM2Tracker",
    "SAM2_HUB_IDS",
    "compute_flow",
    "consistent_flow",
    "get_tracker",
    "check_track_inputs",
]


def get_tracker(name: str, **options) -> MaskTracker:
    """Build a tracker by name: "classical" (options: TrackerConfig and FlowConfig fields, flat) or "sam2"
    (SAM2Config fields)."""
    if name == "classical":
        return ClassicalFlowTracker(TrackerConfig.from_options(**options))
    if name == "sam2":
        return SAM2Tracker(SAM2Config(**options))
    raise ValueError(f"unknown tracker {name!r}; choose 'classical' or 'sam2'")
