"""Action recovery from KVAF frames (EA-WM 4.4): heatmap centre -> end-effector pixel, pose axes -> orientation
and depth, gripper geometry -> opening; with per-cue detection rates.

Heuristic and single-arm. For each frame:
1. heatmap: pixels with the heatmap's hue (magenta: green ~0, red ~ blue); a Gaussian of the known sigma is
   fitted to their log intensities by weighted least squares (linear in the centre), dropping outliers (pixels
   where the skeleton or the axes cover it), twice;
2. axes: for each axis colour, the pixel farthest from the centre is its tip; with the camera K and E the
   end-effector depth and rotation follow from the three tips (weak-perspective start, then a perspective
   least-squares refinement); the position is the centre's ray at that depth;
3. gripper: the schematic gripper is drawn at the recovered pose for openings 0..1 and the one whose white
   mask best overlaps the frame's white pixels (IoU) is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from actwm.geometry import project_points
from actwm.robots.kinematics import ArmPose
from actwm.robots.render import GRIPPER_SEGMENTS, RenderConfig, check_cameras, gripper_points
from actwm.robots.spec import GripperSpec


@dataclass(frozen=True)
class RecoveryConfig:
    """Thresholds of the heuristic (pixel counts at any size; IoU in [0, 1]).

    `gripper_min_px`: the finger tips must move at least this far (px) between closed and open for the opening
    to count as visible.
    """

    heatmap_min_pixels: int = 8
    axis_min_pixels: int = 2
    gripper_steps: int = 21
    gripper_min_iou: float = 0.25
    gripper_min_px: float = 2.0
    gripper_shift_px: int = 2


@dataclass
class Recovered:
    """Per-frame recovered end-effector cues (NaN where not detected).

    Attributes:
        ee_uv: `(T, 2)` heatmap centre in pixels; ee_pos: `(T, 3)` world position; ee_rot: `(T, 3, 3)` world axes
        as columns; opening: `(T,)` gripper opening in [0, 1]; detected: per cue (`heatmap`, `axes`, `gripper`)
        a `(T,)` bool array.
    """

    ee_uv: np.ndarray
    ee_pos: np.ndarray
    ee_rot: np.ndarray
    opening: np.ndarray
    detected: dict[str, np.ndarray]

    def detection_rate(self) -> dict[str, float]:
        """Fraction of frames each cue (and all three together: `all`) was detected in."""
        rates = {k: float(v.mean()) for k, v in self.detected.items()}
        rates["all"] = float(np.logical_and.reduce(list(self.detected.values())).mean())
        return rates


def heatmap_centre(frame: np.ndarray, sigma: float, cfg: RecoveryConfig = RecoveryConfig()) -> np.ndarray | None:
    """`(H, W, 3)` uint8 KVAF frame -> the heatmap's sub-pixel centre (u, v), or None when too little is visible."""
    rgb = frame.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mask = (g <= 0.15 * np.maximum(r, b) + 4) & (np.abs(r - b) <= 0.12 * np.maximum(r, b) + 4) & (r + b >= 40)
    vs, us = np.nonzero(mask)
    if len(us) < cfg.heatmap_min_pixels:
        return None
    inten = (r[vs, us] + b[vs, us]) / (2 * 255.0)
    y = np.log(inten) + (us**2 + vs**2) / (2 * sigma**2)
    a = np.stack([np.ones_like(y), us / sigma**2, vs / sigma**2], -1)
    keep = np.ones(len(y), bool)
    for _ in range(3):  # weighted LS (var of log I ~ 1 / I^2), then drop pixels covered by other elements
        if keep.sum() < cfg.heatmap_min_pixels:
            return None
        w = inten[keep]
        coef = np.linalg.lstsq(a[keep] * w[:, None], y[keep] * w, rcond=None)[0]
        resid = np.abs(a @ coef - y)
        keep = resid < max(0.1, 3 * np.median(resid[keep]))
    centre = coef[1:]  # y = c + (u * uc + v * vc) / sigma^2
    h, w_ = frame.shape[:2]
    return centre if (-sigma <= centre[0] <= w_ + sigma and -sigma <= centre[1] <= h + sigma) else None


def axis_tips(frame: np.ndarray, centre: np.ndarray, thickness: int, cfg: RecoveryConfig = RecoveryConfig()):
    """`(3, 2)` pixel tips of the x (red), y (green), z (blue) axes drawn from `centre`, or None if one is missing."""
    rgb = frame.astype(np.int32)
    tips = np.empty((3, 2))
    for i in range(3):
        # pure hue: the depth palette, the gripper (white) and the heatmap (magenta) never have two channels
        # below a quarter of the third, even where anti-aliasing darkens them
        mask = (rgb[..., i] >= 100) & (4 * np.delete(rgb, i, -1).max(-1) <= rgb[..., i])
        vs, us = np.nonzero(mask)
        if len(us) < cfg.axis_min_pixels:
            return None
        d = np.hypot(us - centre[0], vs - centre[1])
        k = int(np.argmax(d))
        tip = np.array([us[k], vs[k]], dtype=np.float64)
        if d[k] > thickness / 2:  # the farthest pixel overshoots the tip by about half the line width
            tip -= (tip - centre) / d[k] * (thickness / 2)
        tips[i] = tip
    return tips


def pose_from_axes(centre: np.ndarray, tips: np.ndarray, k: np.ndarray, e: np.ndarray, length: float):
    """End-effector world position `(3,)` and rotation `(3, 3)` from its pixel, its axis tips, K, E, axis length."""
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    ray = np.array([(centre[0] - cx) / fx, (centre[1] - cy) / fy, 1.0])
    # 1. weak perspective: image offsets / f = (L / z) * first two rows of the camera-frame rotation
    b = np.stack([(tips[:, 0] - centre[0]) / fx, (tips[:, 1] - centre[1]) / fy])
    s = max(np.sqrt((b**2).sum() / 2), 1e-6)
    rows = b / s
    r0 = np.stack([rows[0], rows[1], np.cross(rows[0], rows[1])])
    u, _, vt = np.linalg.svd(r0)
    r0 = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt

    # 2. perspective refinement of rotation and depth along the centre's ray
    def residual(x: np.ndarray) -> np.ndarray:
        rot, z = Rotation.from_rotvec(x[:3]).as_matrix(), np.exp(x[3])
        pts = z * ray + length * rot.T  # rows: the three tips in the camera frame
        return np.concatenate(
            [(fx * pts[:, 0] / pts[:, 2] + cx) - tips[:, 0], (fy * pts[:, 1] / pts[:, 2] + cy) - tips[:, 1]]
        )

    x0 = np.concatenate([Rotation.from_matrix(r0).as_rotvec(), [np.log(length / s)]])
    x = least_squares(residual, x0, method="lm").x
    r_cam, z = Rotation.from_rotvec(x[:3]).as_matrix(), float(np.exp(x[3]))
    rot_w = e[:3, :3].T
    return rot_w @ (z * ray - e[:3, 3]), rot_w @ r_cam


def gripper_opening(frame, pos, rot, k, e, spec, thickness: int, cfg: RecoveryConfig = RecoveryConfig()):
    """Opening in [0, 1] whose drawn gripper best matches the frame's white pixels (IoU), or None."""
    white = frame.min(-1) >= 200
    known = white | (frame.max(-1) < 30)  # pixels covered by other elements (axes, links) say nothing
    if white.sum() < 3:
        return None
    grid = np.linspace(0.0, 1.0, cfg.gripper_steps)
    pose = ArmPose(pos[None], np.zeros((1, 0, 3)), pos[None], rot[None])
    uv, z = project_points(np.concatenate([gripper_points(pose, spec, np.array([o])) for o in grid]), k, e)
    if (z <= 0).any():
        return None
    tips = uv.reshape(len(grid), -1, 2)[:, 4:6]
    if np.linalg.norm(tips[-1] - tips[0], axis=-1).max() < cfg.gripper_min_px:
        return None  # seen edge-on: the opening does not show in the image
    # crop around the white pixels and every candidate, padded by the shift search range
    pad, h, w = cfg.gripper_shift_px, white.shape[0], white.shape[1]
    vs, us = np.nonzero(white)
    lo = np.floor(np.minimum(uv.min((0, 1)), [us.min(), vs.min()])).astype(int) - pad - thickness
    hi = np.ceil(np.maximum(uv.max((0, 1)), [us.max(), vs.max()])).astype(int) + pad + thickness + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, [w, h])
    if (hi <= lo).any():
        return None
    crop = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    white_c, known_c = white[crop], known[crop]
    best, best_iou = None, cfg.gripper_min_iou
    for o, pts in zip(grid, np.round((uv - lo + pad) * 16).astype(np.int64).tolist()):
        canvas = np.zeros((hi[1] - lo[1] + 2 * pad, hi[0] - lo[0] + 2 * pad), np.uint8)
        for a, b in GRIPPER_SEGMENTS:  # drawn as the renderer draws it, thresholded as `white`
            cv2.line(canvas, tuple(pts[a]), tuple(pts[b]), 255, thickness, cv2.LINE_AA, 4)
        iou = _best_shift_iou(canvas >= 200, white_c, known_c, pad)
        if iou > best_iou:
            best, best_iou = float(o), iou
    return best


def _best_shift_iou(drawn: np.ndarray, white: np.ndarray, known: np.ndarray, pad: int) -> float:
    """Best IoU of `drawn` (padded by `pad`) against `white` over integer shifts up to `pad` (absorbs pose error)."""
    h, w = white.shape
    best = 0.0
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            mask = drawn[dy : dy + h, dx : dx + w] & known
            best = max(best, (mask & white).sum() / max(1, (mask | white).sum()))
    return best


def recover_kvaf(
    frames: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    render: RenderConfig,
    gripper: GripperSpec | None,
    cfg: RecoveryConfig = RecoveryConfig(),
) -> Recovered:
    """Recover one arm's end-effector cues from `(T, H, W, 3)` uint8 KVAF frames drawn with `render`.

    `intrinsics` `(T, 3, 3)` / `(3, 3)` and `extrinsics` `(T, 4, 4)` / `(4, 4)` are the frames' camera.
    """
    t = len(frames)
    if frames.ndim != 4 or frames.shape[1:] != (render.height, render.width, 3) or frames.dtype != np.uint8:
        raise ValueError(
            f"recover_kvaf: frames must be uint8 (T, {render.height}, {render.width}, 3), "
            f"got {frames.dtype} {frames.shape}"
        )
    k, e = check_cameras(intrinsics, extrinsics, t)
    out = Recovered(
        np.full((t, 2), np.nan), np.full((t, 3), np.nan), np.full((t, 3, 3), np.nan), np.full(t, np.nan), {}
    )
    det = {name: np.zeros(t, bool) for name in ("heatmap", "axes", "gripper")}
    for i, frame in enumerate(frames):
        centre = heatmap_centre(frame, render.sigma_px, cfg)
        if centre is None:
            continue
        out.ee_uv[i], det["heatmap"][i] = centre, True
        tips = axis_tips(frame, centre, render.thickness, cfg)
        if tips is None:
            continue
        out.ee_pos[i], out.ee_rot[i] = pose_from_axes(centre, tips, k[i], e[i], render.axis_length)
        det["axes"][i] = True
        if gripper is not None:
            o = gripper_opening(frame, out.ee_pos[i], out.ee_rot[i], k[i], e[i], gripper, render.thickness, cfg)
            if o is not None:
                out.opening[i], det["gripper"][i] = o, True
    out.detected = det
    return out


def recovery_errors(rec: Recovered, truth: ArmPose, intrinsics: np.ndarray, extrinsics: np.ndarray) -> dict:
    """Median errors over the frames where each cue was detected, and the detection rates.

    pixel: heatmap centre vs the true ee projected (px); translation: metres; rotation: geodesic angle (rad);
    gripper: |opening - true opening|.
    """
    k, e = check_cameras(intrinsics, extrinsics, len(truth))
    uv, _ = project_points(truth.ee_pos[:, None], k, e)
    h, a = rec.detected["heatmap"], rec.detected["axes"]
    g = rec.detected["gripper"] & (truth.opening is not None)
    rel = np.einsum("tji,tjk->tik", rec.ee_rot[a], truth.ee_rot[a])
    angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0))
    med = lambda x: float(np.median(x)) if len(x) else float("nan")  # noqa: E731
    return {
        "pixel_error": med(np.linalg.norm(rec.ee_uv[h] - uv[h, 0], axis=-1)),
        "translation_error": med(np.linalg.norm(rec.ee_pos[a] - truth.ee_pos[a], axis=-1)),
        "rotation_error": med(angle),
        "gripper_error": med(np.abs(rec.opening[g] - truth.opening[g])) if truth.opening is not None else float("nan"),
        "detection_rate": rec.detection_rate(),
    }
