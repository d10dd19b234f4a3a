"""Rasterise Kinematic-to-Visual Action Fields (KVAFs, EA-WM 3.1) on a black canvas, frame by frame.

Per frame and arm: a Gaussian end-effector heatmap (magenta, beneath everything), then the depth-shaded
skeleton (root -> joint origins -> end-effector), joint landmarks and the white gripper drawn far to near
(nearer primitives cover farther ones), then the end-effector pose axes (x red, y green, z blue, far axis
first). Depth colours run from yellow (near) over orange to blue (far), over an absolute depth range or the
video's own percentiles. Points at or behind the camera are dropped with every primitive that uses them.
Pixel coordinates follow OpenCV (integer values at pixel centres), as `actwm.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from actwm.checks import require, require_at_least, require_choice, require_positive
from actwm.geometry import check_camera, project_points
from actwm.robots.kinematics import ArmPose
from actwm.robots.spec import GripperSpec

MIN_DEPTH = 1e-3  # metres in front of the camera a point must be to be drawn
HEATMAP_RGB = (255, 0, 255)
AXIS_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
GRIPPER_RGB = (255, 255, 255)
# near -> far; green stays >= 120 so skeleton pixels never look like the heatmap (green 0)
_PALETTE_ANCHORS = np.array([[255, 235, 120], [255, 140, 0], [60, 170, 255]], dtype=np.float64)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions to 1/16 px
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class RenderConfig:
    """How KVAF frames are drawn (sizes in pixels at `height`; lengths in metres).

    Attributes:
        height, width: canvas size.
        depth_mode: "percentile" (per-video `percentiles` of the keypoint depths) or "absolute" (`depth_range`).
        line_px, landmark_px: skeleton thickness and landmark radius at 128 px rows (scaled with `height`).
        heatmap_sigma: Gaussian sigma as a fraction of `height` (EA-WM: 16 px at 480 rows).
        axis_length: pose-axis length.
        skeleton, landmarks, gripper, heatmap, axes: which elements to draw.
    """

    height: int = 128
    width: int = 128
    depth_mode: str = "percentile"
    depth_range: tuple[float, float] = (0.3, 2.5)
    percentiles: tuple[float, float] = (5.0, 95.0)
    line_px: float = 2.0
    landmark_px: float = 2.5
    heatmap_sigma: float = 16.0 / 480.0
    axis_length: float = 0.08
    skeleton: bool = True
    landmarks: bool = True
    gripper: bool = True
    heatmap: bool = True
    axes: bool = True

    def __post_init__(self) -> None:
        require_at_least(self, 8, "height", "width")
        require_choice(self, "depth_mode", ("percentile", "absolute"))
        require(0 < self.depth_range[0] < self.depth_range[1], self, "depth_range", "(near, far) with 0 < near < far")
        lo, hi = self.percentiles
        require(0 <= lo < hi <= 100, self, "percentiles", "(low, high) with 0 <= low < high <= 100")
        require_positive(self, "heatmap_sigma", "axis_length")

    @property
    def scale(self) -> float:
        return self.height / 128.0

    @property
    def thickness(self) -> int:
        return max(1, round(self.line_px * self.scale))

    @property
    def radius(self) -> int:
        return max(1, round(self.landmark_px * self.scale))

    @property
    def sigma_px(self) -> float:
        return self.heatmap_sigma * self.height


def palette(x: np.ndarray) -> np.ndarray:
    """Depth fraction `(...)` in [0, 1] (0 near) -> RGB `(..., 3)` float."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    pos = np.linspace(0.0, 1.0, len(_PALETTE_ANCHORS))
    return np.stack([np.interp(x, pos, _PALETTE_ANCHORS[:, c]) for c in range(3)], -1)


def gripper_points(pose: ArmPose, spec: GripperSpec, opening: np.ndarray | None = None) -> np.ndarray:
    """World points `(T, 6, 3)`: end-effector origin, palm centre, palm ends (- / + spread), tips (- / +).

    The opening defaults to `pose.opening` (fully open when unknown).
    """
    t = len(pose)
    o = pose.opening if opening is None else np.asarray(opening, dtype=np.float64)
    o = np.ones(t) if o is None else np.broadcast_to(o, (t,))
    spread, depth = pose.ee_rot[..., spec.spread_axis], pose.ee_rot[..., spec.depth_axis]
    palm = pose.ee_pos + pose.ee_rot @ np.asarray(spec.palm)
    half = spec.tip_half_closed + o * (spec.tip_half_open - spec.tip_half_closed)
    tip_centre = palm + depth * (spec.tip_depth - spec.palm[spec.depth_axis])
    pts = [
        pose.ee_pos,
        palm,
        palm - spread * spec.palm_half,
        palm + spread * spec.palm_half,
        tip_centre - spread * half[:, None],
        tip_centre + spread * half[:, None],
    ]
    return np.stack(pts, 1)


# gripper segments as index pairs into gripper_points
GRIPPER_SEGMENTS = ((0, 1), (2, 3), (2, 4), (3, 5))


def arm_keypoints(pose: ArmPose, gripper: GripperSpec | None, axis_length: float) -> dict[str, np.ndarray]:
    """World keypoints of one arm: `chain` (T, n+2, 3) root..ee, `gripper` (T, 6, 3), `axes` (T, 3, 3) tips."""
    chain = np.concatenate([pose.root[:, None], pose.joints, pose.ee_pos[:, None]], 1)
    out = {"chain": chain, "axes": pose.ee_pos[:, None] + axis_length * np.swapaxes(pose.ee_rot, 1, 2)}
    if gripper is not None:
        out["gripper"] = gripper_points(pose, gripper)
    return out


def check_cameras(intrinsics: np.ndarray, extrinsics: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame cameras `(T, 3, 3)`, `(T, 4, 4)` (a single camera is repeated); ValueError naming the frame."""
    k, e = np.asarray(intrinsics, dtype=np.float64), np.asarray(extrinsics, dtype=np.float64)
    k = np.broadcast_to(k, (t, 3, 3)) if k.shape == (3, 3) else k
    e = np.broadcast_to(e, (t, 4, 4)) if e.shape == (4, 4) else e
    if k.shape != (t, 3, 3) or e.shape != (t, 4, 4):
        raise ValueError(
            f"camera: need {t} frames of intrinsics (3, 3) and extrinsics (4, 4), got {k.shape}, {e.shape}"
        )
    for i in range(t):
        if i == 0 or not (np.array_equal(k[i], k[i - 1]) and np.array_equal(e[i], e[i - 1])):
            check_camera(k[i], e[i], what=f"camera at frame {i}")
    return k, e


def scale_intrinsics(intrinsics: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """`(..., 3, 3)` K for a `src_hw` image -> K for the same view resized to `dst_hw` (pixel-centre convention)."""
    k = np.array(intrinsics, dtype=np.float64, copy=True)
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    k[..., 0, :] *= sx
    k[..., 1, :] *= sy
    k[..., 0, 2] += (sx - 1) / 2
    k[..., 1, 2] += (sy - 1) / 2
    k[..., 2, :] = (0.0, 0.0, 1.0)
    return k


def depth_limits(depths: list[np.ndarray], cfg: RenderConfig) -> tuple[float, float]:
    """Near / far depth of the colour scale: absolute, or the percentiles of the visible keypoint depths."""
    if cfg.depth_mode == "absolute":
        return cfg.depth_range
    z = np.concatenate([d.reshape(-1) for d in depths])
    z = z[z > MIN_DEPTH]
    if z.size == 0:
        return cfg.depth_range
    lo, hi = np.percentile(z, cfg.percentiles)
    return (float(lo), float(hi)) if hi - lo > 1e-3 else (float(lo) - 0.05, float(hi) + 0.05)


def draw_heatmap(canvas: np.ndarray, uv: np.ndarray, sigma: float) -> None:
    """Max-composite a Gaussian of peak 255 (HEATMAP_RGB) centred at float pixel `uv` onto `canvas` in place."""
    h, w = canvas.shape[:2]
    r = int(np.ceil(3 * sigma))
    u0, v0 = int(np.floor(uv[0])) - r, int(np.floor(uv[1])) - r
    u1, v1 = min(w, u0 + 2 * r + 2), min(h, v0 + 2 * r + 2)
    u0, v0 = max(0, u0), max(0, v0)
    if u0 >= u1 or v0 >= v1:
        return
    du = np.arange(u0, u1) - uv[0]
    dv = np.arange(v0, v1) - uv[1]
    g = np.exp(-(dv[:, None] ** 2 + du[None, :] ** 2) / (2 * sigma * sigma))
    layer = np.round(g[..., None] * np.asarray(HEATMAP_RGB, dtype=np.float64)).astype(np.uint8)
    np.maximum(canvas[v0:v1, u0:u1], layer, out=canvas[v0:v1, u0:u1])


@dataclass
class _Projected:
    """One arm's keypoints in one video: pixel `uv` (T, N, 2), depth `z` (T, N), slices into N per part.

    `prepare` adds per-point validity `ok` (T, N), fixed-point pixels `fx` (T, N, 2) and the depth colours
    of the skeleton segments `seg_rgb` (T, n+1, 3) and landmarks `dot_rgb` (T, n, 3), for the whole video at once.
    """

    uv: np.ndarray
    z: np.ndarray
    parts: dict[str, slice]
    gripper: bool
    ok: np.ndarray | None = None
    fx: list | None = None
    seg_rgb: list | None = None
    dot_rgb: list | None = None

    def prepare(self, near: float, far: float) -> None:
        self.ok = (self.z > MIN_DEPTH) & np.isfinite(self.uv).all(-1)
        # python ints: what cv2 accepts, converted once per video
        self.fx = np.round(np.where(self.ok[..., None], self.uv, 0.0) * _ONE).astype(np.int64).tolist()
        zc = self.z[:, self.parts["chain"]]
        frac = lambda z: (z - near) / (far - near)  # noqa: E731
        self.seg_rgb = np.round(palette(frac(0.5 * (zc[:, 1:] + zc[:, :-1])))).astype(np.int64).tolist()
        self.dot_rgb = np.round(palette(frac(zc[:, 1:-1]))).astype(np.int64).tolist()


def _project_arm(pose: ArmPose, gripper: GripperSpec | None, k: np.ndarray, e: np.ndarray, cfg: RenderConfig):
    kp = arm_keypoints(pose, gripper, cfg.axis_length)
    parts, start = {}, 0
    for name, arr in kp.items():
        parts[name] = slice(start, start + arr.shape[1])
        start += arr.shape[1]
    uv, z = project_points(np.concatenate(list(kp.values()), 1), k, e)
    return _Projected(uv, z, parts, gripper is not None)


def _primitives(arm: _Projected, t: int, cfg: RenderConfig) -> list[tuple]:
    """Depth-keyed drawing primitives of one arm at frame t: (depth, kind, fixed-point points, colour)."""
    prims: list[tuple] = []
    ok, fx, z = arm.ok[t].tolist(), arm.fx[t], arm.z[t].tolist()
    c0, c1 = arm.parts["chain"].start, arm.parts["chain"].stop
    if cfg.skeleton:
        for k, a in enumerate(range(c0, c1 - 1)):
            if ok[a] and ok[a + 1]:
                prims.append((0.5 * (z[a] + z[a + 1]), 0, (tuple(fx[a]), tuple(fx[a + 1])), tuple(arm.seg_rgb[t][k])))
    if cfg.landmarks:
        for k, j in enumerate(range(c0 + 1, c1 - 1)):
            if ok[j]:
                prims.append((z[j] - 1e-4, 1, (tuple(fx[j]),), tuple(arm.dot_rgb[t][k])))
    if cfg.gripper and arm.gripper:
        g0 = arm.parts["gripper"].start
        for a, b in GRIPPER_SEGMENTS:
            if ok[g0 + a] and ok[g0 + b]:
                prims.append((0.5 * (z[g0 + a] + z[g0 + b]), 0, (tuple(fx[g0 + a]), tuple(fx[g0 + b])), GRIPPER_RGB))
    return prims


def _draw_axes(canvas: np.ndarray, arm: _Projected, t: int, thickness: int) -> None:
    ee, ax = arm.parts["chain"].stop - 1, arm.parts["axes"].start
    if not arm.ok[t, ee]:
        return
    for i in sorted(range(3), key=lambda i: -arm.z[t, ax + i]):  # far axis first
        if arm.ok[t, ax + i]:
            cv2.line(
                canvas, tuple(arm.fx[t][ee]), tuple(arm.fx[t][ax + i]), AXIS_RGB[i], thickness, cv2.LINE_AA, _SHIFT
            )


def _draw_frame(arms: list[_Projected], t: int, cfg: RenderConfig) -> np.ndarray:
    canvas = np.zeros((cfg.height, cfg.width, 3), np.uint8)
    if cfg.heatmap:
        for arm in arms:
            ee = arm.parts["chain"].stop - 1
            if arm.ok[t, ee]:
                draw_heatmap(canvas, arm.uv[t, ee], cfg.sigma_px)
    prims = [q for arm in arms for q in _primitives(arm, t, cfg)]
    th, r = cfg.thickness, cfg.radius
    for _, kind, pts, col in sorted(prims, key=lambda q: -q[0]):  # far to near: nearer covers farther
        if kind == 0:
            cv2.line(canvas, pts[0], pts[1], col, th, cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(canvas, pts[0], r * _ONE, col, -1, cv2.LINE_AA, _SHIFT)
            if r >= 2:
                cv2.circle(canvas, pts[0], r * _ONE, (0, 0, 0), 1, cv2.LINE_AA, _SHIFT)
    if cfg.axes:
        for arm in arms:
            _draw_axes(canvas, arm, t, th)
    return canvas


def _landmarks(arm: _Projected, t: int) -> dict[str, Any]:
    c = arm.parts["chain"]
    pt = lambda i: [float(arm.uv[t, i, 0]), float(arm.uv[t, i, 1])] if arm.ok[t, i] else None  # noqa: E731
    return {"joints": [pt(i) for i in range(c.start + 1, c.stop - 1)], "ee": pt(c.stop - 1)}


def render_kvaf(
    arms: list[ArmPose],
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    cfg: RenderConfig,
    grippers: list[GripperSpec | None] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render one or two arms' KVAF video.

    Args:
        arms: per arm an `ArmPose` over the same T frames (world frame, metres).
        intrinsics: `(T, 3, 3)` or `(3, 3)` K for a `cfg.height` x `cfg.width` image (OpenCV pixels).
        extrinsics: `(T, 4, 4)` or `(4, 4)` world-to-camera.
        grippers: per arm the schematic gripper (None: no gripper); default none.

    Returns:
        frames `(T, H, W, 3)` uint8 RGB, and per frame `{"joints": [[u, v] | None, ...], "ee": [u, v] | None}`
        (one arm) or `{"arms": [...those...]}` (several); None marks a point at or behind the camera.
    """
    # 1. validate arms and cameras
    if not 1 <= len(arms) <= 2:
        raise ValueError(f"render_kvaf: one or two arms, got {len(arms)}")
    t = len(arms[0])
    if any(len(a) != t for a in arms):
        raise ValueError(f"render_kvaf: arms cover different frame counts {[len(a) for a in arms]}")
    grippers = list(grippers) if grippers is not None else [None] * len(arms)
    if len(grippers) != len(arms):
        raise ValueError(f"render_kvaf: {len(grippers)} gripper specs for {len(arms)} arms")
    k, e = check_cameras(intrinsics, extrinsics, t)
    # 2. project every keypoint of every frame at once; 3. fix the depth colour scale
    proj = [_project_arm(a, g, k, e, cfg) for a, g in zip(arms, grippers)]
    near, far = depth_limits([pa.z[:, pa.parts["chain"]] for pa in proj], cfg)
    # 4. draw frame by frame
    for pa in proj:
        pa.prepare(near, far)
    frames = np.stack([_draw_frame(proj, i, cfg) for i in range(t)])
    marks = [[_landmarks(pa, i) for pa in proj] for i in range(t)]
    return frames, [m[0] if len(m) == 1 else {"arms": m} for m in marks]
