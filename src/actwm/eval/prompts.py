"""Selecting the structures SCS tracks, on the first ground-truth frame.

Three sources, all producing `(N, H, W)` bool masks on the anchor frame:

* prompts (`--structures prompts`), like the paper's clicks. A JSON file maps each sequence name to a list of
  structures, each a box and/or points in pixels of the ground-truth frames::

      {"seq_a": [{"box": [x0, y0, x1, y1]}, {"points": [[x, y], [x, y]]}], "seq_b": [...]}

  Box corners are pixel-edge coordinates with `0 <= x0 < x1 <= W`, `0 <= y0 < y1 <= H`; points are
  pixel coordinates with `0 <= x < W`, `0 <= y < H`. A box becomes a mask by GrabCut initialised with
  the box (or the plain box with `box_mode="box"`); points grow a colour region from each click
  (flood fill in Lab with a fixed tolerance around the clicked colour), restricted to the box when both
  are given. A tracker that can segment from prompts itself (SAM2) is used instead when passed.
* simulator segmentation (`--structures segmentation`): one mask per object id present on the frame, with
  enough area (`min_area` pixels) and not covering more than `max_area_fraction` of the image (the
  floor or sky would dominate the score), optionally restricted to the scene's static ids.
* automatic (`--structures auto`): mean-shift smoothing + k-means colour quantisation of the frame; the
  largest connected colour regions within the same area bounds are the structures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from actwm.io import read_json

__all__ = [
    "Prompt",
    "load_prompts",
    "parse_prompts",
    "validate_prompt",
    "prompt_mask",
    "masks_from_prompts",
    "structures_from_segmentation",
    "structures_auto",
]


@dataclass(frozen=True)
class Prompt:
    """One structure: a box `(x0, y0, x1, y1)` and/or positive click points `((x, y), ...)` in pixels."""

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.box is None and not self.points:
            raise ValueError("a prompt needs a 'box' or non-empty 'points'")


def _parse_one(item: Any, where: str) -> Prompt:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: each structure must be an object with 'box' and/or 'points', got {item!r}")
    unknown = set(item) - {"box", "points", "name"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: box, points, name)")
    box = item.get("box")
    points = item.get("points")
    if box is None and points is None:
        raise ValueError(f"{where}: needs 'box' [x0, y0, x1, y1] or 'points' [[x, y], ...]")
    if box is not None:
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ValueError(f"{where}: 'box' must be [x0, y0, x1, y1] numbers, got {box!r}")
        box = tuple(float(v) for v in box)
    if points is not None:
        ok = (
            isinstance(points, (list, tuple))
            and len(points) > 0
            and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
                for p in points
            )
        )
        if not ok:
            raise ValueError(f"{where}: 'points' must be a non-empty list of [x, y] numbers, got {points!r}")
        points = tuple((float(p[0]), float(p[1])) for p in points)
    return Prompt(box=box, points=points)


def parse_prompts(data: Any, source: str = "prompts") -> dict[str, list[Prompt]]:
    """Validate the structure of a prompts mapping `{seq: [{"box": ...} | {"points": ...}, ...]}`."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a JSON object mapping sequence names to lists of structures")
    out: dict[str, list[Prompt]] = {}
    for seq, items in data.items():
        if not isinstance(items, list) or not items:
            raise ValueError(f"{source}: sequence {seq!r}: expected a non-empty list of structures")
        out[str(seq)] = [_parse_one(item, f"{source}: sequence {seq!r}, structure {i}") for i, item in enumerate(items)]
    return out


def load_prompts(path: str | Path) -> dict[str, list[Prompt]]:
    """Read and validate a prompts JSON file (see module docstring)."""
    return parse_prompts(read_json(path), source=str(path))


def _fmt(values) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def validate_prompt(prompt: Prompt, height: int, width: int, where: str) -> None:
    """Raise ValueError naming `where` if the prompt does not lie inside a `height` x `width` image."""
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"{where}: box {_fmt(prompt.box)} is outside the {width}x{height} image or empty "
                f"(need 0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height})"
            )
    for x, y in prompt.points or ():
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"{where}: point {_fmt((x, y))} is outside the {width}x{height} image")


def _box_pixels(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def _grabcut(frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """GrabCut foreground inside `box`; the plain box if GrabCut keeps under 10 % of it or cannot run."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = _box_pixels(box)
    boxmask = np.zeros((h, w), bool)
    boxmask[y0:y1, x0:x1] = True
    if x1 - x0 < 3 or y1 - y0 < 3 or (x1 - x0) * (y1 - y0) > 0.95 * h * w:
        return boxmask  # too small to segment, or no background outside the box to learn from
    gc = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 3, cv2.GC_INIT_WITH_RECT)
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return fg if fg.sum() >= 0.1 * boxmask.sum() else boxmask


def _grow(frame: np.ndarray, points, tolerance: int, limit: np.ndarray | None) -> np.ndarray:
    """Union of flood fills (Lab, fixed range `tolerance` around each seed's colour)."""
    h, w = frame.shape[:2]
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
    grown = np.zeros((h, w), bool)
    for x, y in points:
        ff = np.zeros((h + 2, w + 2), np.uint8)
        if limit is not None:
            ff[1:-1, 1:-1][~limit] = 1  # non-zero mask pixels block the fill
        flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
        tol = (tolerance,) * 3
        cv2.floodFill(lab.copy(), ff, (int(x), int(y)), 0, tol, tol, flags)
        grown |= ff[1:-1, 1:-1] == 255
    return grown


def prompt_mask(frame: np.ndarray, prompt: Prompt, *, box_mode: str = "grabcut", tolerance: int = 12) -> np.ndarray:
    """`(H, W, 3)` uint8 frame + prompt -> `(H, W)` bool mask (classical, no weights).

    Args:
        box_mode: "grabcut" (GrabCut initialised with the box) or "box" (the box itself).
        tolerance: flood-fill colour tolerance (Lab units) for point prompts.
    """
    if box_mode not in ("grabcut", "box"):
        raise ValueError(f"box_mode must be 'grabcut' or 'box', got {box_mode!r}")
    h, w = frame.shape[:2]
    limit = None
    if prompt.box is not None:
        x0, y0, x1, y1 = _box_pixels(prompt.box)
        limit = np.zeros((h, w), bool)
        limit[y0:y1, x0:x1] = True
    if prompt.points:
        return _grow(frame, prompt.points, tolerance, limit)
    assert prompt.box is not None
    return _grabcut(frame, prompt.box) if box_mode == "grabcut" else limit


def masks_from_prompts(
    frame: np.ndarray, prompts: list[Prompt], *, seq: str = "", segmenter: Any = None, box_mode: str = "grabcut"
) -> np.ndarray:
    """Validate prompts against `frame` and turn them into `(N, H, W)` bool masks.

    Args:
        frame: `(H, W, 3)` uint8 first ground-truth frame.
        seq: sequence name used in error messages.
        segmenter: optional object with `masks_from_prompts(frame, prompts) -> (N, H, W)` (e.g. SAM2Tracker);
            the classical `prompt_mask` is used when None.
    """
    h, w = frame.shape[:2]
    for i, p in enumerate(prompts):
        validate_prompt(p, h, w, f"sequence {seq!r}, structure {i}")
    if segmenter is not None and hasattr(segmenter, "masks_from_prompts"):
        masks = np.asarray(segmenter.masks_from_prompts(frame, prompts), bool)
    else:
        masks = np.stack([prompt_mask(frame, p, box_mode=box_mode) for p in prompts])
    for i, m in enumerate(masks):
        if not m.any():
            raise ValueError(f"sequence {seq!r}, structure {i}: the prompt selects no pixels")
    return masks


def _area_bounds(h: int, w: int, min_area: int, max_area_fraction: float) -> tuple[int, float]:
    if min_area < 1 or not 0 < max_area_fraction <= 1:
        raise ValueError("need min_area >= 1 and 0 < max_area_fraction <= 1")
    return min_area, max_area_fraction * h * w


def structures_from_segmentation(
    seg0: np.ndarray,
    *,
    static_ids: list[int] | None = None,
    min_area: int = 16,
    max_area_fraction: float = 0.5,
    max_objects: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """One mask per object id on a segmentation frame.

    Args:
        seg0: `(H, W)` int object ids of the anchor frame (negative ids = background, ignored).
        static_ids: if given, only these ids are candidates (e.g. `Episode.meta["static_ids"]`).
        min_area: minimum pixels of an id's region.
        max_area_fraction: regions covering more than this fraction of the image are skipped.
        max_objects: keep at most this many, the largest first.
    Returns:
        `((N, H, W) bool masks, ids)` sorted by decreasing area.
    """
    seg0 = np.asarray(seg0)
    if seg0.ndim != 2:
        raise ValueError(f"segmentation frame must be (H, W), got {seg0.shape}")
    lo, hi = _area_bounds(*seg0.shape, min_area, max_area_fraction)
    ids, counts = np.unique(seg0, return_counts=True)
    keep = [(int(c), int(i)) for i, c in zip(ids, counts) if i >= 0 and lo <= c <= hi]
    if static_ids is not None:
        allowed = {int(s) for s in static_ids}
        keep = [(c, i) for c, i in keep if i in allowed]
    keep.sort(key=lambda ci: (-ci[0], ci[1]))
    if max_objects is not None:
        keep = keep[:max_objects]
    chosen = [i for _, i in keep]
    masks = np.stack([seg0 == i for i in chosen]) if chosen else np.zeros((0, *seg0.shape), bool)
    return masks, chosen


def structures_auto(
    frame: np.ndarray,
    *,
    clusters: int = 6,
    min_area: int = 32,
    max_area_fraction: float = 0.5,
    max_objects: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Largest colour-homogeneous regions of a frame, as `(N, H, W)` bool masks (N <= max_objects).

    Mean-shift filtering smooths texture, k-means (in Lab, `clusters` colours, fixed seed) quantises it,
    each colour's 8-connected components (opened by a 3x3 kernel) are candidate regions.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    h, w = frame.shape[:2]
    lo, hi = _area_bounds(h, w, min_area, max_area_fraction)
    smooth = cv2.pyrMeanShiftFiltering(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), 6, 12)
    lab = cv2.cvtColor(smooth, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(seed)
    k = min(clusters, len(np.unique(lab, axis=0)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, _ = cv2.kmeans(lab, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(h, w)
    kernel = np.ones((3, 3), np.uint8)
    regions: list[tuple[int, np.ndarray]] = []
    for c in range(k):
        layer = cv2.morphologyEx((labels == c).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(layer, connectivity=8)
        for i in range(1, n):
            area = int(stats[i, cv2.CC_STAT_AREA])
            if lo <= area <= hi:
                regions.append((area, comp == i))
    regions.sort(key=lambda r: -r[0])
    masks = [m for _, m in regions[:max_objects]]
    return np.stack(masks) if masks else np.zeros((0, h, w), bool)
