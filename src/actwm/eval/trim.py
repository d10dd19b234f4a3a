"""Where a sequence stops being comparable: the SCS trim point.

EgoWM (section 4) trims each evaluation sequence "to exclude frames containing only novel regions unseen in
the initial observation": the sequence ends at the first frame where all points visible in the first frame
have left the field of view. Two ways to find that frame:

* `flow_trim_point`: a dense point tracker on the ground-truth video. Points on a regular grid of frame 0
  are chained through OpenCV optical flow; a point is dropped when it leaves the image or fails a
  forward-backward consistency check several frames in a row (occluded, or lost). (The paper uses Harley
  et al.'s dense tracker; this is the classical stand-in that needs no weights.) Chained flow loses points
  over time, so this trim tends to come earlier than the exact one: on 10 nav-simulator episodes of 33
  frames (64 px) it trimmed between 19 frames earlier and 3 frames later than `depth_trim_point`
  (median 5 earlier). Prefer the depth trim when depth and camera poses exist.
* `depth_trim_point`: exact for simulator data. Every frame-0 pixel with a valid depth is back-projected
  with the intrinsics, moved into frame t with the extrinsics (world-to-camera, OpenCV convention: x right,
  y down, z forward) and projected; it is visible if it lands inside the image, in front of the camera and
  not behind the surface recorded in frame t's depth (within a tolerance).

Both return a `TrimResult` whose `trim` is the index of the first frame with no visible frame-0 point, or
`T` when some remain until the end. Frames `t >= trim` are excluded from SCS.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from actwm.eval.flow import FlowConfig, compute_flow, consistent_flow
from actwm.geometry import backproject_depth, project_points

__all__ = ["TrimResult", "flow_trim_point", "depth_trim_point"]


@dataclass(frozen=True)
class TrimResult:
    """`trim`: first frame index with no frame-0 point visible (T if none such); `visible`: `(T,)` int
    count of frame-0 points still visible per frame; `method`: "flow", "depth" or "none"."""

    trim: int
    visible: np.ndarray
    method: str

    def as_dict(self) -> dict:
        return {"trim": int(self.trim), "method": self.method, "visible": [int(v) for v in self.visible]}


def _first_empty(visible: np.ndarray) -> int:
    empty = np.nonzero(visible == 0)[0]
    return int(empty[0]) if len(empty) else len(visible)


def flow_trim_point(
    frames: np.ndarray, *, step: int = 2, config: FlowConfig | None = None, patience: int = 2
) -> TrimResult:
    """Trim point from a dense grid of frame-0 points chained through optical flow.

    Args:
        frames: `(T, H, W, 3)` uint8 ground-truth video; frame 0 is the first (context) frame.
        step: grid spacing in pixels of the tracked points.
        config: flow settings (defaults: `FlowConfig()`).
        patience: a point is dropped after failing the forward-backward check this many frames in a row
            (one failure is often a flow glitch on flat or periodic texture rather than an occlusion); only
            points passing the check in a frame count as visible there.
    Returns:
        `TrimResult` with method "flow".
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    t_len, h, w, _ = frames.shape
    visible = np.zeros(t_len, np.int64)
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    fails = np.zeros(len(pts), np.int64)
    visible[0] = len(pts)
    if t_len == 1:
        return TrimResult(t_len, visible, "flow")
    cfg = config or FlowConfig()
    fwd = compute_flow(frames, cfg, backward=False)
    back = compute_flow(frames, cfg, backward=True)
    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for t in range(1, t_len):
        if len(pts) == 0:
            break
        ok = consistent_flow(fwd[t - 1], back[t - 1], grid).astype(np.float32)
        # bilinear flow at sub-pixel positions; validity must be ~1 at all four neighbours
        px = pts[:, 0].reshape(-1, 1, 1).astype(np.float32)
        py = pts[:, 1].reshape(-1, 1, 1).astype(np.float32)
        f = cv2.remap(fwd[t - 1], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
        good = cv2.remap(ok, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1) > 0.5
        pts = pts + f
        fails = np.where(good, 0, fails + 1)
        inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < h - 0.5)
        visible[t] = int((inside & (fails == 0)).sum())  # confirmed this frame
        keep = inside & (fails < patience)  # a point failing once is kept on probation
        pts, fails = pts[keep], fails[keep]
    return TrimResult(_first_empty(visible), visible, "flow")


def _check_geometry(depth: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> None:
    if depth.ndim != 3:
        raise ValueError(f"depth must be (T, H, W), got {depth.shape}")
    t_len = len(depth)
    if intrinsics.shape != (t_len, 3, 3):
        raise ValueError(f"intrinsics must be (T, 3, 3) with T = {t_len}, got {intrinsics.shape}")
    if extrinsics.shape != (t_len, 4, 4):
        raise ValueError(f"extrinsics must be (T, 4, 4) with T = {t_len}, got {extrinsics.shape}")


def depth_trim_point(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    *,
    step: int = 1,
    rel_tol: float = 0.03,
    abs_tol: float = 0.02,
    max_depth: float | None = None,
    valid0: np.ndarray | None = None,
) -> TrimResult:
    """Exact trim point from depth and camera poses (simulator data).

    Args:
        depth: `(T, H, W)` float metric depth along the optical axis (z in the camera frame).
        intrinsics: `(T, 3, 3)` pinhole K; pixel (u, v) = column, row of the pixel centre.
        extrinsics: `(T, 4, 4)` world-to-camera transforms (OpenCV: x right, y down, z forward).
        step: use every `step`-th pixel of frame 0.
        rel_tol, abs_tol: a point at camera depth z is occluded in frame t if
            `z > depth_t[v, u] * (1 + rel_tol) + abs_tol` at its (rounded) pixel.
        max_depth: frame-0 pixels at or beyond this depth (e.g. the far plane / sky) are ignored.
        valid0: optional `(H, W)` bool of frame-0 pixels to use (e.g. `segmentation[0] >= 0` to leave out
            the background / sky, which has no geometry).
    Returns:
        `TrimResult` with method "depth".
    """
    depth = np.asarray(depth, np.float64)
    intrinsics = np.asarray(intrinsics, np.float64)
    extrinsics = np.asarray(extrinsics, np.float64)
    _check_geometry(depth, intrinsics, extrinsics)
    t_len, h, w = depth.shape
    vs, us = np.mgrid[0:h:step, 0:w:step]
    us, vs = us.ravel(), vs.ravel()
    z0 = depth[0, vs, us]
    keep = np.isfinite(z0) & (z0 > 0)
    if valid0 is not None:
        valid0 = np.asarray(valid0, bool)
        if valid0.shape != (h, w):
            raise ValueError(f"valid0 must be (H, W) = {(h, w)}, got {valid0.shape}")
        keep &= valid0[vs, us]
    if max_depth is not None:
        keep &= z0 < max_depth
    us, vs = us[keep], vs[keep]
    cam0 = backproject_depth(depth[0], intrinsics[0])[vs, us]  # (N, 3) camera frame 0
    cam_to_world = np.linalg.inv(extrinsics[0])
    world = cam0 @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]
    visible = np.zeros(t_len, np.int64)
    for t in range(t_len):
        uv, z = project_points(world, intrinsics[t], extrinsics[t])
        front = z > 1e-6
        with np.errstate(invalid="ignore"):
            u, v = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        ui, vi = u[inside].astype(int), v[inside].astype(int)
        surface = depth[t, vi, ui]
        unoccluded = ~(z[inside] > surface * (1 + rel_tol) + abs_tol)
        visible[t] = int(unoccluded.sum())
    return TrimResult(_first_empty(visible), visible, "depth")
