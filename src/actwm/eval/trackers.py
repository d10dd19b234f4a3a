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
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

__all__ = [
    "MaskTracker",
    "FlowConfig",
    "ClassicalFlowTracker",
    "SAM2Config",
    "SAM2Tracker",
    "compute_flow",
    "consistent_flow",
    "get_tracker",
    "check_track_inputs",
]


class MaskTracker(Protocol):
    """What SCS needs from a tracker."""

    name: str

    def track(self, frames: np.ndarray, masks0: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8 and `(N, H, W)` bool -> `(T, N, H, W)` bool."""
        ...


def check_track_inputs(frames: np.ndarray, masks0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the common tracker inputs; returns them as numpy arrays."""
    frames = np.asarray(frames)
    masks0 = np.asarray(masks0)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < 1:
        raise ValueError("frames: the video is empty")
    if masks0.ndim != 3 or masks0.shape[1:] != frames.shape[1:3]:
        raise ValueError(f"masks0 must be (N, H, W) with H, W = {frames.shape[1:3]}, got {masks0.shape}")
    return frames, masks0.astype(bool)


# --------------------------------------------------------------------------------------------------
# Classical optical-flow tracker
# --------------------------------------------------------------------------------------------------

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class FlowConfig:
    """Settings of the classical tracker and of the flow used by the flow-based trim.

    Flow:
        method: "dis" (OpenCV DIS optical flow) or "farneback".
        preset: DIS preset, one of "ultrafast", "fast", "medium".
        finest_scale, patch_size, patch_stride: DIS overrides. OpenCV's presets stop at pyramid level 1 or
            2 (half or quarter resolution), which underestimates motion by ~40 % on 64-128 px video;
            level 0 with 4 px patches fixes that.
        gd_iterations, var_iterations: DIS gradient-descent / variational-refinement iterations (None:
            the preset's, 25 / 5 for "medium").
        max_flow_size: flow is computed on frames downscaled so their longest side is at most this, then
            upsampled; None = full resolution. Masks are always tracked at full resolution.
        global_prior: large camera rotations move the whole image further than a small image's flow
            pyramid can follow; when the phase-correlation shift between two frames is at least
            `prior_min_shift` px, flow is computed on the second frame pre-aligned by that shift. With
            `prior_only` False the unaligned flow is computed too and each pixel keeps the candidate
            with the lower local photometric error (twice the cost).
    Tracking (parametric models):
        motion_model: "homography", "affine" (per-object motion fitted to its interior flow) or "dense"
            (per-pixel backward warping of the mask); see `ClassicalFlowTracker`.
        erode: pixels eroded off the previous mask before its flow is fitted (flow at motion boundaries is
            smeared between object and background).
        min_points, max_points: flow vectors needed for a fit / used at most per fit.
        ransac_threshold: RANSAC inlier threshold in pixels.
        fb_check: fit only flow vectors that pass a forward-backward consistency check (costs a second
            flow field per frame); without it RANSAC alone rejects outliers.
        verify: choose each step's motion among the object's own fit, the whole-frame (camera) motion
            and, if it has no fit, its previous motion, by the photometric error of warping the object's
            pixels onto the next frame (pixels pushed out of view cost a fixed 16 grey levels).
        refine, refine_band, refine_ratio: re-label pixels within `refine_band` px of each warped
            boundary by a colour-likelihood ratio (object vs rest of the frame, colour histograms of the
            previous frame with 8 levels per RGB channel): added above `refine_ratio`, removed below its
            inverse. Corrects small drift every frame; helps most on flat-shaded renders.
        extend, extend_ratio: grow each mask into content that entered the view this step (outside the
            previous frame under the object's motion, e.g. the rest of a wall as the camera turns) where
            the colour ratio exceeds `extend_ratio`, keeping regions connected to the mask.
        extend_disoccluded: also grow into pixels failing the backward forward-backward check
            (disoccluded); off by default because periodic or flat textures fail that check too.
        offscreen: margin kept around the image, as a fraction of the image size: the part of a
            structure that leaves the view keeps moving with the camera (whole-frame) motion and
            reappears when the view returns. 0 disables re-entry.
    Tracking ("dense" model):
        occlusion_check: drop pixels whose backward flow fails a forward-backward check (disoccluded,
            e.g. background uncovered behind a moving object) instead of letting them inherit the mask
            value of whatever covered them in frame t-1.
    """

    method: str = "dis"
    preset: str = "medium"
    motion_model: str = "homography"
    erode: int = 3
    min_points: int = 6
    max_points: int = 400
    ransac_threshold: float = 1.0
    extend: bool = True
    extend_ratio: float = 4.0
    extend_disoccluded: bool = False
    verify: bool = True
    offscreen: float = 1.0
    finest_scale: int = 0
    max_flow_size: int | None = 64
    fb_check: bool = True
    global_prior: bool = True
    prior_min_shift: float = 3.0
    prior_only: bool = True
    refine: bool = True
    refine_band: int = 2
    refine_ratio: float = 8.0
    occlusion_check: bool = True
    patch_size: int = 4
    patch_stride: int = 2
    gd_iterations: int | None = None
    var_iterations: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("dis", "farneback"):
            raise ValueError(f"FlowConfig.method must be 'dis' or 'farneback', got {self.method!r}")
        if self.preset not in _DIS_PRESETS:
            raise ValueError(f"FlowConfig.preset must be one of {sorted(_DIS_PRESETS)}, got {self.preset!r}")
        if self.finest_scale < 0 or self.patch_size < 2 or self.patch_stride < 1:
            raise ValueError("FlowConfig: finest_scale >= 0, patch_size >= 2 and patch_stride >= 1 are required")
        if self.motion_model not in ("homography", "affine", "dense"):
            raise ValueError(
                f"FlowConfig.motion_model must be 'homography', 'affine' or 'dense', got {self.motion_model!r}"
            )
        if self.offscreen < 0 or self.extend_ratio <= 1.0 or self.refine_ratio <= 1.0 or self.refine_band < 1:
            raise ValueError(
                "FlowConfig: offscreen >= 0, extend_ratio > 1, refine_ratio > 1 and refine_band >= 1 are required"
            )
        if self.erode < 0 or self.min_points < 3 or self.max_points < self.min_points or self.ransac_threshold <= 0:
            raise ValueError(
                "FlowConfig: erode >= 0, 3 <= min_points <= max_points and ransac_threshold > 0 are required"
            )

    @property
    def label(self) -> str:
        """Short description for reports: method and motion model, plus every setting changed from the
        defaults (so two numbers with the same label came from the same tracker)."""
        base = f"dis-{self.preset}" if self.method == "dis" else "farneback"
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("method", "preset", "motion_model") and getattr(self, f.name) != f.default
        ]
        return ",".join([base, self.motion_model, *changed])


class _FlowEngine:
    """Holds one OpenCV flow object; computes `(H, W, 2)` float32 flow from `a` to `b` (x, y order)."""

    def __init__(self, config: FlowConfig) -> None:
        self.config = config
        self._dis = None
        if config.method == "dis":
            self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[config.preset])
            self._dis.setFinestScale(config.finest_scale)
            self._dis.setPatchSize(config.patch_size)
            self._dis.setPatchStride(config.patch_stride)
            if config.gd_iterations is not None:
                self._dis.setGradientDescentIterations(config.gd_iterations)
            if config.var_iterations is not None:
                self._dis.setVariationalRefinementIterations(config.var_iterations)

    def _raw(self, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
        if self._dis is not None:
            return self._dis.calc(gray_a, gray_b, None)
        return cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def __call__(self, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
        if not self.config.global_prior:
            return self._raw(gray_a, gray_b)
        # Large camera rotations move the whole image by more than a small image's flow pyramid can
        # follow. Phase correlation finds the dominant shift s; flow on b pre-shifted by s, plus s, is a
        # second candidate. Each pixel keeps the candidate with the lower local photometric error.
        h, w = gray_a.shape
        a32, b32 = gray_a.astype(np.float32), gray_b.astype(np.float32)
        (sx, sy), _ = cv2.phaseCorrelate(a32, b32, self._window(h, w))
        if max(abs(sx), abs(sy)) < self.config.prior_min_shift:
            return self._raw(gray_a, gray_b)
        shift = np.float32([[1, 0, sx], [0, 1, sy]])
        b_shift = cv2.warpAffine(
            gray_b, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        alt = self._raw(gray_a, b_shift) + np.float32([sx, sy])
        if self.config.prior_only:
            return alt
        flow = self._raw(gray_a, gray_b)
        err = self._photometric_error(a32, b32, flow)
        err_alt = self._photometric_error(a32, b32, alt)
        return np.where((err_alt < err)[..., None], alt, flow)

    def _window(self, h: int, w: int) -> np.ndarray:
        if getattr(self, "_win_shape", None) != (h, w):
            self._win = cv2.createHanningWindow((w, h), cv2.CV_32F)
            self._win_shape = (h, w)
        return self._win

    @staticmethod
    def _photometric_error(a32: np.ndarray, b32: np.ndarray, flow: np.ndarray) -> np.ndarray:
        h, w = a32.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(b32, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.GaussianBlur(np.abs(a32 - warped), (7, 7), 0)


def _gray(frames: np.ndarray) -> np.ndarray:
    """`(T, H, W, 3)` uint8 RGB -> `(T, H, W)` uint8 luminance."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def compute_flow(frames: np.ndarray, config: FlowConfig | None = None, backward: bool = True) -> np.ndarray:
    """Flow between consecutive frames.

    Args:
        frames: `(T, H, W, 3)` uint8.
        backward: True gives `flow[t-1]` = flow from frame t to frame t-1 (where each pixel of frame t came
            from); False gives flow from frame t-1 to frame t.
    Returns:
        `(T - 1, H, W, 2)` float32, (dx, dy) in pixels.
    """
    config = config or FlowConfig()
    engine = _FlowEngine(config)
    gray = _gray(frames)
    h, w = gray.shape[1:]
    scale = 1.0
    if config.max_flow_size and max(h, w) > config.max_flow_size:
        scale = config.max_flow_size / max(h, w)
        small = (max(8, round(w * scale)), max(8, round(h * scale)))
        gray = np.stack([cv2.resize(g, small, interpolation=cv2.INTER_AREA) for g in gray])
    out = np.empty((len(frames) - 1, h, w, 2), np.float32)
    for t in range(1, len(gray)):
        f = engine(gray[t], gray[t - 1]) if backward else engine(gray[t - 1], gray[t])
        if scale != 1.0:
            sx, sy = w / gray.shape[2], h / gray.shape[1]
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32([sx, sy])
        out[t - 1] = f
    return out


def consistent_flow(
    flow_ab: np.ndarray,
    flow_ba: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    alpha: float = 0.01,
    beta: float = 0.5,
) -> np.ndarray:
    """Forward-backward consistency of `flow_ab` (from image a to b) against `flow_ba` (from b to a).

    A pixel x of image a passes when `|f_ab(x) + f_ba(x + f_ab(x))|^2 < alpha (|f_ab|^2 + |f_ba|^2) + beta`
    (Sundaram et al. 2010) and `x + f_ab(x)` lies inside image b. Pixels of a that are hidden in b (for
    backward flow: pixels of frame t that were covered in frame t-1, i.e. disoccluded) fail.
    Returns `(H, W)` bool.
    """
    h, w = flow_ab.shape[:2]
    back = _remap(np.ascontiguousarray(flow_ba), flow_ab, grid)
    diff = flow_ab + back
    err = (diff**2).sum(-1)
    tol = alpha * ((flow_ab**2).sum(-1) + (back**2).sum(-1)) + beta
    tx = grid[0] + flow_ab[..., 0]
    ty = grid[1] + flow_ab[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (err < tol) & inside


_COLOUR_BINS = 8


def _colour_index(frames: np.ndarray) -> np.ndarray:
    """`(T, H, W, 3)` uint8 -> `(T, H, W)` int colour-histogram bin (8 levels per RGB channel)."""
    q = (frames // (256 // _COLOUR_BINS)).astype(np.int64)
    return (q[..., 0] * _COLOUR_BINS + q[..., 1]) * _COLOUR_BINS + q[..., 2]


def _inside(flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`(H, W)` bool: pixels whose flow target lies inside the image."""
    h, w = flow.shape[:2]
    tx, ty = grid[0] + flow[..., 0], grid[1] + flow[..., 1]
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


def _remap(image: np.ndarray, flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample `image` at `grid + flow` (bilinear, zeros outside)."""
    map_x = grid[0] + flow[..., 0]
    map_y = grid[1] + flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class ClassicalFlowTracker:
    """Mask propagation with dense optical flow; needs no weights.

    Two propagation models (`FlowConfig.motion_model`):

    * "homography" (default) / "affine": at each step t-1 -> t, the forward flow of the object's interior
      (previous mask eroded by `erode` px; forward-backward consistent vectors only) is fitted with a
      parametric motion by RANSAC. The fit is checked (RANSAC agreement, a convex image of the mask's box
      of similar area) and compared, by photometric error on the object's pixels, with the whole-frame
      (camera) motion, which also moves objects with too little visible support. The previous mask is
      warped by the chosen motion, then its boundary band is re-labelled and content entering the view is
      added by colour likelihood (`refine`, `extend`). A homography is exact for planar structures (walls,
      floor, building faces) under any camera motion and a good approximation for compact objects; fitting
      the interior keeps the smeared flow at motion boundaries out.
    * "dense": the flow from frame t back to frame t-1 tells every pixel of frame t where it was in frame
      t-1; the object's soft mask of frame t-1 is sampled there (bilinear) and thresholded at 0.5. Pixels
      failing the forward-backward check (disoccluded) become background.

    Pixels mapped from outside the image are background, so an object that leaves the view ends up empty
    (with the parametric models it keeps moving on an off-screen canvas and can come back into view; an
    object hidden behind another one is not re-acquired).

    Accuracy: mean IoU 0.81-0.84 against the nav simulator's own segmentation over 16 frames (static
    structures >= 1 % of the image, 64 and 128 px), 0.98-0.99 on textured synthetic objects.
    """

    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()
        self.name = f"classical-flow({self.config.label})"

    def track(self, frames: np.ndarray, masks0: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8, `(N, H, W)` bool -> `(T, N, H, W)` bool."""
        frames, masks0 = check_track_inputs(frames, masks0)
        t_len, h, w, _ = frames.shape
        out = np.zeros((t_len, len(masks0), h, w), bool)
        out[0] = masks0
        if t_len == 1 or len(masks0) == 0:
            return out
        grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        fwd = compute_flow(frames, self.config, backward=False)
        need_back = self.config.motion_model == "dense" or self.config.fb_check or self.config.extend_disoccluded
        back = compute_flow(frames, self.config, backward=True) if need_back else None
        if self.config.motion_model == "dense":
            self._track_dense(out, back, fwd, grid)
        else:
            self._track_parametric(out, back, fwd, grid, frames)
        return out

    def _track_dense(self, out: np.ndarray, back: np.ndarray, fwd: np.ndarray, grid) -> None:
        soft = out[0].astype(np.float32)
        for t in range(1, len(out)):
            valid = consistent_flow(back[t - 1], fwd[t - 1], grid) if self.config.occlusion_check else None
            for j in range(out.shape[1]):
                warped = _remap(soft[j], back[t - 1], grid)
                if valid is not None:
                    warped[~valid] = 0.0
                soft[j] = warped
                out[t, j] = warped > 0.5

    def _track_parametric(self, out: np.ndarray, back: np.ndarray, fwd: np.ndarray, grid, frames: np.ndarray) -> None:
        n, h, w = out.shape[1:]
        pad = int(round(self.config.offscreen * max(h, w)))
        # each mask lives on a canvas `pad` px larger on every side, so the part of an object that leaves the
        # view keeps moving with the camera and comes back when the view returns
        canvas = np.zeros((n, h + 2 * pad, w + 2 * pad), bool)
        canvas[:, pad : pad + h, pad : pad + w] = out[0]
        to_canvas = np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1]], np.float64)
        from_canvas = np.linalg.inv(to_canvas)
        ones = np.ones((h, w), np.float32)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.config.erode + 1,) * 2)
        colour = _colour_index(frames) if (self.config.extend or self.config.refine) else None
        gray = _gray(frames).astype(np.float32) if self.config.verify else None
        ratios: list[np.ndarray | None] = [None] * n
        last: list[np.ndarray | None] = [None] * n
        for t in range(1, len(out)):
            valid = (
                consistent_flow(fwd[t - 1], back[t - 1], grid)
                if back is not None and self.config.fb_check
                else _inside(fwd[t - 1], grid)
            )
            # pixels of frame t with no reliable source in frame t-1 (disoccluded or new at the border)
            unexplained = (
                ~consistent_flow(back[t - 1], fwd[t - 1], grid)
                if self.config.extend and self.config.extend_disoccluded
                else None
            )
            camera: np.ndarray | None = None  # whole-frame motion, for objects with too little visible support
            for j in range(n):
                if not canvas[j].any():
                    continue
                prev = out[t - 1, j]
                if camera is None:
                    camera = self._fit(valid, fwd[t - 1], np.ones_like(prev))
                    camera = np.eye(3) if camera is None else camera
                fit = None
                if prev.sum() >= self.config.min_points:
                    inner = cv2.erode(prev.astype(np.uint8), kernel) > 0 if self.config.erode else prev
                    if inner.sum() < self.config.min_points:
                        inner = prev
                    fit = self._fit(inner & valid, fwd[t - 1], prev)
                # candidates: the object's own fit, the camera (whole-frame) motion and, when the object has no
                # fit of its own (e.g. sliding out of view loses its flow support), its last motion
                candidates = [m for m in (fit, camera, last[j] if fit is None else None) if m is not None]
                if self.config.verify and prev.any() and len(candidates) > 1:
                    step = min(candidates, key=lambda m: _photo_error(gray[t - 1], gray[t], prev, m))
                else:
                    step = fit if fit is not None else camera
                last[j] = step
                big = (
                    cv2.warpPerspective(
                        canvas[j].astype(np.float32),
                        to_canvas @ step @ from_canvas,
                        canvas.shape[:0:-1],
                        flags=cv2.INTER_LINEAR,
                        borderValue=0,
                    )
                    > 0.5
                )
                warped = big[pad : pad + h, pad : pad + w]
                if colour is not None and warped.any():
                    if prev.any():
                        ratios[j] = self._colour_ratio(colour[t - 1], prev)
                    ratio = ratios[j]
                    if ratio is not None and self.config.refine:
                        warped = self._refine(warped, ratio[colour[t]])
                    if ratio is not None and self.config.extend:
                        # content that was outside frame t-1 under this motion (entered the view this step)
                        seen = cv2.warpPerspective(ones, step, (w, h), flags=cv2.INTER_LINEAR, borderValue=0) > 0.5
                        novel = ~seen if unexplained is None else ~seen | unexplained
                        warped = self._extend(warped, novel, ratio[colour[t]])
                    big[pad : pad + h, pad : pad + w] = warped
                canvas[j] = big
                out[t, j] = warped

    @staticmethod
    def _colour_ratio(idx_prev: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Per colour bin: likelihood under the object's histogram / under the rest of the frame's."""
        bins = _COLOUR_BINS**3
        h_obj = np.bincount(idx_prev[prev], minlength=bins).astype(np.float64) + 0.5
        h_bg = np.bincount(idx_prev[~prev], minlength=bins).astype(np.float64) + 0.5
        return (h_obj / h_obj.sum()) / (h_bg / h_bg.sum())

    def _refine(self, mask: np.ndarray, ratio_img: np.ndarray) -> np.ndarray:
        """Re-label the band of `refine_band` px around the boundary by colour likelihood ratio."""
        r = self.config.refine_band
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        u8 = mask.astype(np.uint8)
        core = cv2.erode(u8, kernel) > 0
        band = (cv2.dilate(u8, kernel) > 0) & ~core
        hi, lo = self.config.refine_ratio, 1.0 / self.config.refine_ratio
        out = mask.copy()
        out[band & (ratio_img > hi)] = True
        out[band & (ratio_img < lo)] = False
        return out if out.any() else mask

    def _extend(self, mask: np.ndarray, novel: np.ndarray, ratio_img: np.ndarray) -> np.ndarray:
        """Grow `mask` into `novel` pixels (outside frame 0's view under the object's motion) whose colour is
        `extend_ratio` times more likely under the object's histogram, keeping regions connected to `mask`."""
        cand = novel & (ratio_img > self.config.extend_ratio)
        if not cand.any():
            return mask
        count, labels = cv2.connectedComponents((cand | mask).astype(np.uint8), connectivity=4)
        touching = np.unique(labels[mask])
        return mask | (np.isin(labels, touching[touching > 0]) & cand)

    def _fit(self, support: np.ndarray, flow: np.ndarray, region: np.ndarray) -> np.ndarray | None:
        """Fit the motion of the pixels in `support` under `flow`.

        Returns a `(3, 3)` matrix, or None when there are too few points. A homography is kept only if
        RANSAC agrees on at least half the points and it maps the bounding box of `region` to a convex
        quadrilateral of similar area (within x1.5); otherwise an affine fit, then the median shift.
        """
        ys, xs = np.nonzero(support)
        if len(xs) < self.config.min_points:
            return None
        if len(xs) > self.config.max_points:
            idx = np.linspace(0, len(xs) - 1, self.config.max_points).astype(int)
            ys, xs = ys[idx], xs[idx]
        src = np.stack([xs, ys], 1).astype(np.float32)
        dst = src + flow[ys, xs]
        thr = self.config.ransac_threshold
        ry, rx = np.nonzero(region)
        box = np.float32(
            [[rx.min(), ry.min()], [rx.max() + 1, ry.min()], [rx.max() + 1, ry.max() + 1], [rx.min(), ry.max() + 1]]
        )
        if self.config.motion_model == "homography" and len(xs) >= 12:
            mat, inl = cv2.findHomography(src, dst, cv2.RANSAC, thr, maxIters=200, confidence=0.99)
            if mat is not None and np.isfinite(mat).all() and inl.mean() >= 0.5 and _plausible(mat, box):
                return mat
        aff, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=thr, maxIters=200)
        if aff is not None and np.isfinite(aff).all():
            mat = np.vstack([aff, [0, 0, 1]])
            if _plausible(mat, box):
                return mat
        shift = np.median(dst - src, axis=0)
        return np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)


def _photo_error(
    gray_a: np.ndarray, gray_b: np.ndarray, region: np.ndarray, mat: np.ndarray, outside: float = 16.0, k: int = 300
) -> float:
    """Mean |b(M x) - a(x)| over (up to `k`) pixels x of `region`; points mapped outside b cost `outside`."""
    ys, xs = np.nonzero(region)
    if len(xs) > k:
        idx = np.linspace(0, len(xs) - 1, k).astype(int)
        ys, xs = ys[idx], xs[idx]
    src = np.stack([xs, ys], 1).astype(np.float64).reshape(-1, 1, 2)
    dst = cv2.perspectiveTransform(src, mat).reshape(-1, 2).astype(np.float32)
    h, w = gray_a.shape
    inside = (dst[:, 0] >= 0) & (dst[:, 0] <= w - 1) & (dst[:, 1] >= 0) & (dst[:, 1] <= h - 1)
    vals = cv2.remap(gray_b, dst[:, 0].reshape(-1, 1), dst[:, 1].reshape(-1, 1), cv2.INTER_LINEAR).reshape(-1)
    err = np.where(inside, np.abs(vals - gray_a[ys, xs]), outside)
    return float(err.mean())


def _plausible(mat: np.ndarray, box: np.ndarray, max_scale: float = 1.5) -> bool:
    """Does `mat` map the quadrilateral `box` (4, 2) to a convex one with area within x`max_scale`?"""
    pts = cv2.perspectiveTransform(box.reshape(-1, 1, 2).astype(np.float64), mat).reshape(-1, 2)
    if not np.isfinite(pts).all():
        return False

    def area(q: np.ndarray) -> float:
        x, y = q[:, 0], q[:, 1]
        return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))

    a0, a1 = area(box.astype(np.float64)), area(pts)
    if a0 <= 0 or a1 <= 0 or not (1 / max_scale <= a1 / a0 <= max_scale):
        return False
    edges = np.roll(pts, -1, 0) - pts
    cross = edges[:, 0] * np.roll(edges, -1, 0)[:, 1] - edges[:, 1] * np.roll(edges, -1, 0)[:, 0]
    return bool((cross > 0).all() or (cross < 0).all())


# --------------------------------------------------------------------------------------------------
# SAM2 tracker
# --------------------------------------------------------------------------------------------------

SAM2_HUB_IDS: dict[str, tuple[str, str]] = {
    # hub id -> (config inside the sam2 package, checkpoint file name in the hub repo)
    "facebook/sam2-hiera-tiny": ("configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt"),
    "facebook/sam2-hiera-small": ("configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small.pt"),
    "facebook/sam2-hiera-base-plus": ("configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt"),
    "facebook/sam2-hiera-large": ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt"),
    "facebook/sam2.1-hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SAM2Config:
    """Where SAM2 comes from.

    Attributes:
        model: a checkpoint file (`*.pt` holding `{"model": state_dict}`, the official format) or a hub id
            such as "facebook/sam2.1-hiera-tiny" (resolved from the local Hugging Face cache only).
        config: the sam2 model config, e.g. "configs/sam2.1/sam2.1_hiera_t.yaml"; inferred from the hub id
            or from an official checkpoint file name when omitted.
        device: torch device string.
        image_size: override of the model's input resolution (default: the config's, 1024). Smaller is
            faster on CPU at some cost in accuracy.
    """

    model: str = "facebook/sam2.1-hiera-tiny"
    config: str | None = None
    device: str = "cpu"
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None and (self.image_size < 64 or self.image_size % 32):
            raise ValueError(f"SAM2Config.image_size must be a multiple of 32 and >= 64, got {self.image_size}")


def _import_sam2():
    try:
        import sam2  # noqa: F401
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as exc:
        raise ImportError(
            "the SAM2 tracker needs the `sam2` package: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation "
            "sam2==1.1.0` (or `pip install actwm[sam2]`), or use `--tracker classical`"
        ) from exc
    return build_sam2_video_predictor


def _resolve_sam2(config: SAM2Config) -> tuple[str, str]:
    """Return `(config_name, checkpoint_path)` for a SAM2Config, or raise a clear error."""
    model = config.model
    if model in SAM2_HUB_IDS:
        cfg_name, ckpt_name = SAM2_HUB_IDS[model]
        try:
            from huggingface_hub import hf_hub_download

            ckpt = hf_hub_download(repo_id=model, filename=ckpt_name, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any hub/cache failure means "file not available"
            raise FileNotFoundError(
                f"SAM2 checkpoint for {model!r} is not in the local Hugging Face cache; download "
                f"{ckpt_name!r} from https://huggingface.co/{model} and pass its path "
                f"(e.g. --sam2-checkpoint /path/{ckpt_name})"
            ) from exc
        return config.config or cfg_name, ckpt
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM2 checkpoint {path} not found: provide an official SAM2 checkpoint such as "
            f"'sam2.1_hiera_tiny.pt' (a torch file holding {{'model': state_dict}}) or a hub id from "
            f"{sorted(SAM2_HUB_IDS)}"
        )
    cfg_name = config.config
    if cfg_name is None:
        by_file = {ck: cfg for cfg, ck in SAM2_HUB_IDS.values()}
        if path.name not in by_file:
            raise ValueError(
                f"cannot infer the SAM2 config for checkpoint {path.name!r}; pass config= (e.g. "
                f"'configs/sam2.1/sam2.1_hiera_t.yaml')"
            )
        cfg_name = by_file[path.name]
    return cfg_name, str(path)


@contextlib.contextmanager
def _frames_as_video(module, images, height: int, width: int) -> Iterator[None]:
    """Make `init_state` read our in-memory frames instead of decoding a JPEG folder or mp4 file.

    sam2 1.1.0's `SAM2VideoPredictor.init_state` only accepts a path; it calls the module-level
    `load_video_frames`, which we substitute for the duration of the call.
    """
    original = module.load_video_frames

    def _load(**_kwargs):
        return images, height, width

    module.load_video_frames = _load
    try:
        yield
    finally:
        module.load_video_frames = original


class SAM2Tracker:
    """Mask tracking with the SAM2 video predictor (`sam2.build_sam.build_sam2_video_predictor`).

    Each frame-0 mask is given to SAM2 with `add_new_mask` (object id = its index) and propagated forward
    with `propagate_in_video`; a pixel belongs to the object where the mask logit is > 0.
    """

    def __init__(self, config: SAM2Config | None = None) -> None:
        self.config = config or SAM2Config()
        build = _import_sam2()
        cfg_name, ckpt = _resolve_sam2(self.config)
        overrides = [f"++model.image_size={self.config.image_size}"] if self.config.image_size else []
        try:  # hole filling needs sam2's optional compiled extension; without it sam2 warns on every frame
            import sam2._C  # noqa: F401

            fill_holes = 8
        except ImportError:
            fill_holes = 0
        # sam2's own video post-processing settings (build_sam2_video_predictor's apply_postprocessing)
        overrides += [
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            f"++model.fill_hole_area={fill_holes}",
        ]
        try:
            self.predictor = build(
                cfg_name,
                ckpt_path=ckpt,
                device=self.config.device,
                hydra_overrides_extra=overrides,
                apply_postprocessing=False,
            )
        except RuntimeError as exc:
            raise ValueError(f"SAM2 checkpoint {ckpt} does not match config {cfg_name}: {exc}") from exc
        size = f"@{self.config.image_size}" if self.config.image_size else ""
        self.name = (
            f"sam2({Path(self.config.model).name if Path(self.config.model).is_file() else self.config.model}{size})"
        )

    def _images(self, frames: np.ndarray):
        """`(T, H, W, 3)` uint8 -> `(T, 3, S, S)` float normalised as sam2's own frame loader does."""
        import torch
        import torch.nn.functional as F

        size = self.predictor.image_size
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.config.device)

    def _state(self, frames: np.ndarray):
        import sam2.sam2_video_predictor as svp
        import torch

        h, w = frames.shape[1:3]
        with torch.inference_mode(), _frames_as_video(svp, self._images(frames), h, w):
            return self.predictor.init_state(video_path="<in-memory frames>")

    def masks_from_prompts(self, frame: np.ndarray, prompts) -> np.ndarray:
        """Segment prompted structures on one `(H, W, 3)` uint8 frame -> `(N, H, W)` bool.

        `prompts`: objects with `.box` `(x0, y0, x1, y1)` and/or `.points` `((x, y), ...)` (positive clicks)
        in pixels, e.g. `actwm.eval.prompts.Prompt`.
        """
        import torch

        frame = np.asarray(frame)
        state = self._state(frame[None])
        masks = None
        with torch.inference_mode():
            for j, p in enumerate(prompts):
                points = np.asarray(p.points, np.float32) if p.points else None
                labels = np.ones(len(points), np.int32) if points is not None else None
                box = np.asarray(p.box, np.float32) if p.box is not None else None
                _, _, logits = self.predictor.add_new_points_or_box(
                    state, frame_idx=0, obj_id=j, points=points, labels=labels, box=box
                )
                masks = (logits[:, 0] > 0).cpu().numpy()
        if masks is None:
            return np.zeros((0, *frame.shape[:2]), bool)
        return masks

    def track(self, frames: np.ndarray, masks0: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8, `(N, H, W)` bool -> `(T, N, H, W)` bool."""
        import torch

        frames, masks0 = check_track_inputs(frames, masks0)
        t_len, h, w, _ = frames.shape
        out = np.zeros((t_len, len(masks0), h, w), bool)
        out[0] = masks0
        if len(masks0) == 0:
            return out
        state = self._state(frames)
        with torch.inference_mode():
            for j, mask in enumerate(masks0):
                self.predictor.add_new_mask(state, frame_idx=0, obj_id=j, mask=torch.from_numpy(mask))
            for frame_idx, obj_ids, logits in self.predictor.propagate_in_video(state):
                if frame_idx == 0:
                    continue
                m = (logits[:, 0] > 0).cpu().numpy()
                for k, obj in enumerate(obj_ids):
                    out[frame_idx, int(obj)] = m[k]
        return out


def get_tracker(name: str, **options) -> MaskTracker:
    """Build a tracker by name: "classical" (options: FlowConfig fields) or "sam2" (SAM2Config fields)."""
    if name == "classical":
        return ClassicalFlowTracker(FlowConfig(**options))
    if name == "sam2":
        return SAM2Tracker(SAM2Config(**options))
    raise ValueError(f"unknown tracker {name!r}; choose 'classical' or 'sam2'")
