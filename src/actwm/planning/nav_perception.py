"""Where was the goal image taken? Pose estimation from the agent's own views on `nav`, no world model.

The agent knows its camera (`NavConfig`: field of view, height, downward pitch) and its own executed
actions (odometry), never its true pose. From that:

1. Floor: the room's floor is one two-tone pattern; its palette is read from the bottom rows of the goal
   image (0.6 m ahead of every goal pose is free floor) and every pixel is floor or not by colour distance.
2. Pop-up depth (`popup_points`): a floor pixel lies on the floor plane; above each column's lowest
   non-floor pixel (where a wall or object meets the floor) the column is a vertical surface at that
   contact point's horizontal distance. This gives a 3D point per goal pixel in the goal's robot frame.
3. Panorama (`Panorama`): views taken while turning in place (known relative headings) are resampled
   into one cylindrical image around that spot, so any 3D point can be looked up by bearing and elevation.
4. Search (`estimate_poses`): for candidate goal poses (x, y, yaw) in the panorama's frame (yaws on the
   agent's 22.5-degree lattice, positions on a grid, coarse then fine), the goal's pop-up points are moved
   into the panorama and their colours compared with the goal's (a truncated quadratic, walls and objects
   weighted above the aliasing checker floor); the best distinct candidates are the hypotheses.

Shapes: images `(H, W, 3)` uint8; points `(N, 3)` metres in a robot frame (x forward, y left, z up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np
from einops import rearrange

from actwm.geometry import project_points
from actwm.sim.common import PinholeCamera
from actwm.sim.nav import NavConfig, NavEnv

#: Panorama columns per 22.5-degree turn (the panorama is 16 x this wide: 1.125 degrees a column).
COLS_PER_TURN = 20
TURNS = 16


@dataclass(frozen=True)
class CameraRig:
    """The agent's own camera on `nav` (from `NavConfig`) at a square image size.

    `intrinsics` `(3, 3)`; `extrinsics` `(4, 4)` robot-frame-to-camera (the robot at the origin, heading +x).
    """

    size: int
    nav: NavConfig = NavConfig()

    @property
    def intrinsics(self) -> np.ndarray:
        cam = PinholeCamera(self.size, self.size, self.nav.fov_deg, supersample=self.nav.supersample)
        return cam.intrinsics.astype(np.float64)

    @property
    def extrinsics(self) -> np.ndarray:
        # the simulator's own camera placement, evaluated at the robot-frame origin
        return NavEnv.camera_extrinsics(SimpleNamespace(config=self.nav, pose=None), np.zeros(3))

    def rays(self, u: np.ndarray | None = None, v: np.ndarray | None = None) -> np.ndarray:
        """Ray directions `(..., 3)` in the robot frame (camera centre at height h) of pixels (u, v); every
        pixel centre `(H, W, 3)` by default."""
        if u is None or v is None:
            u, v = np.meshgrid(np.arange(self.size, dtype=np.float64), np.arange(self.size, dtype=np.float64))
        pix = np.stack([u, v, np.ones_like(u)], -1)
        return pix @ np.linalg.inv(self.intrinsics).T @ self.extrinsics[:3, :3]  # camera -> robot: R^T d

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robot-frame points `(..., N, 3)` -> pixels `(..., N, 2)` and camera depth `(..., N)`."""
        return project_points(points, self.intrinsics, self.extrinsics)


def floor_palette(images: list[np.ndarray], rows: int = 3, clusters: int = 4) -> np.ndarray:
    """The floor's two tones `(2, 3)` float32: the two largest colour clusters of the bottom `rows` (about
    0.6 m ahead) of `images` `(H, W, 3)` uint8 of one room (views in several directions: mostly floor)."""
    patch = np.concatenate([_smooth(im)[-rows:].reshape(-1, 3) for im in images]).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(patch, clusters, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    order = np.argsort(-np.bincount(labels.reshape(-1), minlength=clusters))
    return centres[order[:2]]


def floor_mask(image: np.ndarray, palette: np.ndarray, tolerance: float = 28.0) -> np.ndarray:
    """`(H, W)` bool: pixels within `tolerance` (RGB units) of a mix of the two floor tones (far floor blends
    them), after a 3x3 smoothing."""
    img = _smooth(image).astype(np.float32)
    a, b = palette[0], palette[1]
    ab = b - a
    t = np.clip(((img - a) @ ab) / max(float(ab @ ab), 1e-6), 0.0, 1.0)
    dist = np.linalg.norm(img - (a + t[..., None] * ab), axis=-1)
    return dist < tolerance


def _smooth(image: np.ndarray) -> np.ndarray:
    return cv2.blur(image, (3, 3))


def popup_points(rig: CameraRig, floor: np.ndarray, max_range: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Pop-up depth of one view: robot-frame points `(H, W, 3)` and a `(H, W)` bool "is floor" map.

    Scanning each column up from the bottom, floor pixels lie on the floor plane until the first pixel that
    is not floor (two in a row, to skip specks); from there up the column is a vertical surface at that
    contact point's horizontal distance (at most `max_range`).
    """
    h = rig.size
    rays = rig.rays()
    cam_h = rig.nav.camera_height
    down = rays[..., 2] < -1e-6
    t_floor = np.where(down, cam_h / np.maximum(-rays[..., 2], 1e-6), np.inf)
    horiz = np.linalg.norm(rays[..., :2], axis=-1)
    floor_range = np.minimum(t_floor * horiz, max_range)
    is_floor = floor & down
    blocked = ~is_floor & np.roll(~is_floor, 1, axis=0)  # this pixel and the one above are not floor
    blocked[0] = ~is_floor[0]
    rows = np.arange(h)[:, None]
    contact = np.where(blocked, rows, -1).max(axis=0)  # lowest blocked row per column (-1: none)
    contact_row = np.clip(contact, 0, h - 1)
    wall_range = np.where(contact >= 0, floor_range[contact_row, np.arange(h)], max_range)
    on_floor = rows > contact[None, :]
    rng = np.where(on_floor, floor_range, wall_range[None, :])
    points = np.concatenate([rays[..., :2] * (rng / horiz)[..., None], np.zeros_like(rng)[..., None]], -1)
    points[..., 2] = cam_h + rays[..., 2] * rng / horiz
    return points, on_floor


class Panorama:
    """A cylindrical image around one spot, assembled from views taken while turning in place.

    Column j looks along bearing `j * 2 pi / (16 * COLS_PER_TURN)` (counter-clockwise from the frame's +x);
    row v is the row at which a camera facing that bearing sees the point. `add(view, turns)` stores a view
    taken `turns` 22.5-degree left turns from the frame's heading; each column keeps the view that saw it
    nearest its image centre.
    """

    def __init__(self, rig: CameraRig) -> None:
        self.rig = rig
        h = rig.size
        self.width = TURNS * COLS_PER_TURN
        self.image = np.zeros((h, self.width, 3), np.float32)
        self.valid = np.zeros((h, self.width), bool)
        self._offcentre = np.full(self.width, np.inf)
        self.views: list[np.ndarray] = []
        half = int(math.floor(math.radians(rig.nav.fov_deg / 2) / self.step)) - 1
        self._cols = np.arange(-half, half + 1)
        self._map = self._strip_map()

    @property
    def step(self) -> float:
        return 2 * math.pi / (TURNS * COLS_PER_TURN)

    def _strip_map(self) -> np.ndarray:
        """Source pixels `(H, C, 2)` in a view facing bearing 0 of panorama pixels at columns `_cols`."""
        h = self.rig.size
        rows = np.arange(h, dtype=np.float64)
        centre = self.rig.rays(np.full(h, self.rig.intrinsics[0, 2]), rows)  # (H, 3): its y is 0
        ang = self._cols * self.step
        fwd = centre[:, None, 0:1] * np.stack([np.cos(ang), np.sin(ang)], -1)[None]  # (H, C, 2)
        up = np.broadcast_to(centre[:, None, 2:] + self.rig.nav.camera_height, (h, len(ang), 1))
        pts = np.concatenate([fwd, up], -1)
        uv, z = self.rig.project(rearrange(pts, "h c d -> (h c) d"))
        uv = np.where((z > 0)[:, None], uv, -1e4)
        return rearrange(uv, "(h c) d -> h c d", h=h).astype(np.float32)

    def add(self, view: np.ndarray, turns: int) -> None:
        """Store `view` `(H, W, 3)` uint8 taken `turns` left turns (22.5 degrees each) from the frame's heading."""
        h = self.rig.size
        self.views.append(view)
        strip = cv2.remap(
            _smooth(view).astype(np.float32),
            self._map[..., 0],
            self._map[..., 1],
            cv2.INTER_LINEAR,
            borderValue=(-1, -1, -1),
        )
        inside = (
            (self._map[..., 0] >= 0)
            & (self._map[..., 0] <= h - 1)
            & (self._map[..., 1] >= 0)
            & (self._map[..., 1] <= h - 1)
        )
        cols = (self._cols + turns * COLS_PER_TURN) % self.width
        better = np.abs(self._cols) < self._offcentre[cols]
        self.image[:, cols[better]] = strip[:, better]
        self.valid[:, cols[better]] = inside[:, better]
        self._offcentre[cols[better]] = np.abs(self._cols[better])

    def lookup(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colours `(..., N, 3)` float32 and validity `(..., N)` of panorama-frame points `(..., N, 3)`."""
        bearing = np.arctan2(points[..., 1], points[..., 0])
        dist = np.hypot(points[..., 0], points[..., 1])
        facing = np.stack([dist, np.zeros_like(dist), points[..., 2]], -1)
        uv, z = self.rig.project(facing.reshape(-1, 3))
        row = uv[:, 1].reshape(dist.shape)
        col = np.mod(bearing / self.step, self.width)
        h = self.rig.size
        ok = (z.reshape(dist.shape) > 0.05) & (row >= 0) & (row <= h - 1)
        r0 = np.clip(np.round(row), 0, h - 1).astype(np.int64)
        c0 = np.round(col).astype(np.int64) % self.width
        ok &= self.valid[r0, c0]
        return self.image[r0, c0], ok


@dataclass(frozen=True)
class PoseEstimate:
    """The goal pose `(3,)` in the panorama's frame, its cost (lower: better match) and the covered fraction."""

    pose: np.ndarray
    cost: float
    coverage: float


def goal_samples(
    rig: CameraRig, goal: np.ndarray, palette: np.ndarray, stride: int, floor_weight: float
) -> tuple[np.ndarray, ...]:
    """Pop-up points `(N, 3)`, colours `(N, 3)` float32 and weights `(N,)` of every `stride`-th goal pixel."""
    points, on_floor = popup_points(rig, floor_mask(goal, palette))
    colours = _smooth(goal).astype(np.float32)
    sl = (slice(stride // 2, None, stride), slice(stride // 2, None, stride))
    weights = np.where(on_floor[sl], floor_weight, 1.0).reshape(-1)
    return points[sl].reshape(-1, 3), colours[sl].reshape(-1, 3), weights


def candidate_costs(
    pano: Panorama, points: np.ndarray, colours: np.ndarray, weights: np.ndarray, poses: np.ndarray, clip: float
) -> tuple[np.ndarray, np.ndarray]:
    """Costs `(P,)` and covered fractions `(P,)` of candidate goal poses `(P, 3)` in the panorama frame."""
    c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    x = poses[:, :1] + c * points[None, :, 0] - s * points[None, :, 1]
    y = poses[:, 1:2] + s * points[None, :, 0] + c * points[None, :, 1]
    world = np.stack([x, y, np.broadcast_to(points[None, :, 2], x.shape)], -1)
    seen, ok = pano.lookup(world)
    err = np.minimum(((seen - colours[None]) ** 2).sum(-1), clip**2) / clip**2
    wsum = weights.sum()
    covered = (ok * weights).sum(-1) / wsum
    cost = ((np.where(ok, err, 0.0) * weights).sum(-1) + ((~ok) * weights).sum(-1) * 0.5) / wsum
    return cost, covered


def estimate_poses(
    pano: Panorama,
    goal: np.ndarray,
    radius: float = 4.5,
    coarse: float = 0.2,
    fine: float = 0.05,
    floor_weight: float = 0.3,
    clip: float = 60.0,
    keep: int = 8,
    turns: tuple[int, ...] = tuple(range(TURNS)),
    palette: np.ndarray | None = None,
    apart: float = 0.6,
) -> list[PoseEstimate]:
    """Candidate poses of the goal image in the panorama's frame, best first (see the module docstring).

    Yaws `turns` on the 22.5-degree lattice, positions within `radius` m on a `coarse` grid; the `keep` best
    are refined on a `fine` grid, and those at least `apart` m (or a yaw) from a better one are returned.
    `palette`: the floor's tones (default: from the panorama's views and the goal).
    """
    rig = pano.rig
    palette = floor_palette([*pano.views, goal]) if palette is None else palette
    pts, cols, w = goal_samples(rig, goal, palette, stride=4, floor_weight=floor_weight)
    g = np.arange(-radius, radius + 1e-9, coarse)
    xx, yy = np.meshgrid(g, g)
    inside = np.hypot(xx, yy) <= radius
    xy = np.stack([xx[inside], yy[inside]], -1)
    yaws = np.asarray(turns, dtype=np.float64) * (2 * math.pi / TURNS)
    poses = np.concatenate([np.column_stack([xy, np.full(len(xy), a)]) for a in yaws])
    chunks = np.array_split(poses, max(1, len(poses) // 2000))
    cost = np.concatenate([candidate_costs(pano, pts, cols, w, chunk, clip)[0] for chunk in chunks])
    best = poses[np.argsort(cost)[:keep]]
    pts, cols, w = goal_samples(rig, goal, palette, stride=2, floor_weight=floor_weight)
    d = np.arange(-coarse, coarse + 1e-9, fine)
    dx, dy = (a.reshape(-1) for a in np.meshgrid(d, d))
    out: list[PoseEstimate] = []
    for b in best:
        local = np.column_stack([b[0] + dx, b[1] + dy, np.full(len(dx), b[2])])
        cost, covered = candidate_costs(pano, pts, cols, w, local, clip)
        i = int(np.argmin(cost))
        out.append(PoseEstimate(local[i].copy(), float(cost[i]), float(covered[i])))
    out.sort(key=lambda e: e.cost)
    distinct: list[PoseEstimate] = []
    for e in out:
        if all(np.hypot(*(e.pose[:2] - o.pose[:2])) >= apart or e.pose[2] != o.pose[2] for o in distinct):
            distinct.append(e)
    return distinct


def estimate_pose(pano: Panorama, goal: np.ndarray, **options) -> PoseEstimate:
    """The best of `estimate_poses(pano, goal, **options)`."""
    return estimate_poses(pano, goal, **options)[0]
