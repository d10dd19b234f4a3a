"""SCS of one `SequencePair` as the evaluation engine runs it: structures, trim, tracking, per-horizon scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from actwm.eval.prompts import Prompt, masks_from_prompts, structures_auto, structures_from_segmentation
from actwm.eval.scs import structural_consistency
from actwm.eval.sequences import SequencePair
from actwm.eval.trackers import get_tracker
from actwm.eval.trim import TrimResult, depth_trim_point, flow_trim_point

if TYPE_CHECKING:  # only for annotations: engine imports this module
    from actwm.eval.engine import EvalConfig

__all__ = ["SCSScorer"]


class SCSScorer:
    """`scorer(pair) -> (mean per horizon, value at h, info)`, SCS on the 0-100 scale."""

    def __init__(self, cfg: "EvalConfig", prompts: dict[str, list[Prompt]] | None) -> None:
        self.cfg = cfg
        self.prompts = prompts
        if cfg.tracker == "sam2":
            self.tracker = get_tracker(
                "sam2", model=cfg.sam2_model, config=cfg.sam2_config, device=cfg.device, image_size=cfg.sam2_image_size
            )
        else:
            self.tracker = get_tracker("classical")

    def structures(self, pair: SequencePair) -> tuple[np.ndarray, list[Any]]:
        """`(N, H, W)` bool structures on the last context frame and their ids."""
        cfg, anchor = self.cfg, self.cfg.context - 1
        frame = pair.gt[anchor]
        if cfg.structures == "prompts":
            assert self.prompts is not None
            if pair.name not in self.prompts:
                raise ValueError(f"sequence {pair.name!r}: no entry in the prompts file {cfg.prompts}")
            masks = masks_from_prompts(frame, self.prompts[pair.name], seq=pair.name, segmenter=self.tracker)
            return masks, list(range(len(masks)))
        if cfg.structures == "segmentation":
            if "segmentation" not in pair.extras:
                raise ValueError(
                    f"sequence {pair.name!r}: --structures segmentation needs {pair.side_hint('segmentation')}"
                )
            masks, ids = structures_from_segmentation(
                pair.extras["segmentation"][anchor],
                static_ids=pair.meta.get("static_ids"),
                min_area=cfg.min_area,
                max_objects=cfg.max_objects,
            )
            if len(masks) == 0:
                raise ValueError(
                    f"sequence {pair.name!r}: no segmented structure of >= {cfg.min_area} px on frame {anchor}"
                )
            return masks, ids
        masks = structures_auto(frame, min_area=cfg.min_area, max_objects=cfg.max_objects)
        if len(masks) == 0:
            raise ValueError(f"sequence {pair.name!r}: automatic selection found no structure of >= {cfg.min_area} px")
        return masks, list(range(len(masks)))

    def trim(self, pair: SequencePair) -> TrimResult:
        """Where the sequence is trimmed (`--trim`): depth when side data allows under auto, else flow."""
        anchor = self.cfg.context - 1
        geometry = all(k in pair.extras for k in ("depth", "intrinsics", "extrinsics"))
        method = self.cfg.trim
        if method == "auto":
            method = "depth" if geometry else "flow"
        if method == "none":
            return TrimResult(len(pair.gt), np.zeros(0, np.int64), "none")
        if method == "depth":
            if not geometry:
                raise ValueError(
                    f"sequence {pair.name!r}: --trim depth needs depth, intrinsics and extrinsics side data "
                    f"(e.g. {pair.side_hint('depth')})"
                )
            ex = pair.extras
            # with a segmentation, background pixels (id < 0: sky, nothing hit) are not scene points
            valid0 = ex["segmentation"][anchor] >= 0 if "segmentation" in ex else None
            r = depth_trim_point(
                ex["depth"][anchor:], ex["intrinsics"][anchor:], ex["extrinsics"][anchor:], valid0=valid0
            )
        else:
            r = flow_trim_point(pair.gt[anchor:])
        return TrimResult(r.trim + anchor, r.visible, r.method)

    def __call__(self, pair: SequencePair) -> tuple[dict, dict, dict]:
        masks0, ids = self.structures(pair)
        trim = self.trim(pair)
        res = structural_consistency(pair.gt, pair.pred, masks0, self.tracker, context=self.cfg.context, trim=trim.trim)
        mean, at = res.by_horizon(self.cfg.horizons)
        info = {
            "tracker": res.tracker,
            "structures": self.cfg.structures,
            "num_objects": res.num_objects,
            "object_ids": [int(i) for i in ids],
            "object_areas": [int(m.sum()) for m in masks0],
            "trim": trim.trim,
            "trim_method": trim.method,
            "per_frame": [None if np.isnan(row).all() else round(float(row.mean()) * 100, 4) for row in res.iou],
        }
        return mean, at, info
