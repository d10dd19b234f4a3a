"""Reading push-to-target scenes from frames: where block 0 and the target are, from pixels and calibration.

No privileged state: the reader sees only images and the camera's calibration (intrinsics, extrinsics),
which a real robot has. At an episode's start the agent has two images of the same scene with the arm at
home: the first observation (block at its start) and the goal image (block on the target). They differ in
two blobs, the block's start and the target; the blob where the goal image differs most from its own
surroundings is where the goal shows the block (the other shows bare table). From that the reader learns

- the block's colours (the goal's pixels there) and the scene's background colours (the rest of the goal),
- the target's position (the block's position in the goal image),

and then locates the block in any frame, real or imagined, by nearest-colour classification, the largest
connected block-coloured region, and its centroid back-projected onto the plane of block centres.

    reader = BlockReader.from_start(first_rgb, goal_rgb, intrinsics, extrinsics)
    reader.target                     # (2,) world (x, y) of the target, read from the goal image
    reader.locate(rgb)                # (2,) world (x, y) of the block centre, or None when not seen
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from actwm.geometry import check_camera

#: Height (m) of the plane of block centres that pixel centroids are back-projected onto (the middle of the
#: cube half sizes `ManipConfig.block_half`; its error is common to block and target and cancels in distances).
BLOCK_CENTRE_Z = 0.033
#: A changed pixel of the goal image is a block pixel when its colour is this far (RGB, 0-255) from every
#: unchanged scene colour (measured on dev scenes: block pixels >= 26, bare table <= 9).
BLOCK_COLOUR_GAP = 15.0
#: Where on the table a block can be (world x, y bounds, m): block-coloured pixels whose back-projection falls
#: outside (e.g. arm links of a similar colour, seen against the floor) are ignored.
TABLE_REGION = ((0.40, -0.45), (0.95, 0.45))


def pixel_to_plane(uv: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, z: float) -> np.ndarray:
    """Back-project pixel coordinates `(N, 2)` (u, v) onto the world plane at height `z` -> `(N, 3)` points.

    `intrinsics` (3, 3) pinhole, `extrinsics` (4, 4) world-to-camera (OpenCV axes, `actwm.sim.common`).
    Rays that do not meet the plane in front of the camera give NaN rows.
    """
    k, e = np.asarray(intrinsics, np.float64), np.asarray(extrinsics, np.float64)
    rot, trans = e[:3, :3], e[:3, 3]
    centre = -rot.T @ trans
    uv1 = np.concatenate([np.asarray(uv, np.float64).reshape(-1, 2), np.ones((len(np.atleast_2d(uv)), 1))], 1)
    rays = (uv1 @ np.linalg.inv(k).T) @ rot  # (N, 3) world directions (rot.T @ d per row)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (z - centre[2]) / rays[:, 2]
    scale = np.where(scale > 0, scale, np.nan)  # the ray never meets the plane in front of the camera
    return centre + scale[:, None] * rays


def _blobs(mask: np.ndarray, min_area: int = 2) -> list[np.ndarray]:
    """Pixel coordinates `(n, 2)` (row, col) of each 8-connected region of `mask`, largest first."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [np.argwhere(labels == i) for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area]


@dataclass
class BlockReader:
    """Locates block 0 in `(H, W, 3)` uint8 frames of one push episode (see the module docstring).

    Attributes:
        block_colours: `(B, 3)` float RGB samples of the block. background_colours: `(G, 3)` of the rest.
        intrinsics, extrinsics: the camera's calibration. target: `(2,)` world (x, y) of the target.
    """

    block_colours: np.ndarray
    background_colours: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    target: np.ndarray
    area: float = 0.0
    _region_cache: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_start(
        cls, first: np.ndarray, goal: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, diff: float = 40.0
    ) -> BlockReader:
        """Learn the block's colours and the target from the episode's first frame and goal image.

        Where the two differ, the goal shows either the block (its colours are far from every colour of the
        unchanged scene) or bare table (near them). Raises ValueError when no block is seen in the goal.
        """
        check_camera(intrinsics, extrinsics, "push reader camera")
        a, g = first.astype(np.float32), goal.astype(np.float32)
        changed = np.linalg.norm(a - g, axis=-1) > diff
        near = cv2.dilate(changed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        background = g[~near]
        if not changed.any() or len(background) == 0:
            raise ValueError("push reader: the first frame and the goal image do not differ where the block moves")
        pick = np.random.default_rng(0).choice(len(background), size=min(600, len(background)), replace=False)
        background = background[pick]
        block = g[changed][_nearest(g[changed], background) > BLOCK_COLOUR_GAP]
        if len(block) == 0:
            raise ValueError("push reader: no block-coloured pixels where the goal image differs")
        reader = cls(block, background, np.asarray(intrinsics), np.asarray(extrinsics), np.zeros(2))
        target = reader.locate(goal)
        if target is None:
            raise ValueError("push reader: the block is not visible in the goal image")
        reader.target = target
        reader.area = float(len(_blobs(reader.block_mask(goal))[0]))
        return reader

    def block_mask(self, rgb: np.ndarray) -> np.ndarray:
        """`(H, W)` bool: pixels nearer to a block colour than to any background colour, inside `TABLE_REGION`."""
        px = rgb.reshape(-1, 3).astype(np.float32)
        d_block = _nearest(px, self.block_colours.astype(np.float32))
        d_back = _nearest(px, self.background_colours.astype(np.float32))
        return (d_block < d_back).reshape(rgb.shape[:2]) & self._region(rgb.shape[:2])

    def _region(self, shape: tuple[int, int]) -> np.ndarray:
        """`(H, W)` bool: pixels whose ray meets the plane of block centres inside `TABLE_REGION` (cached)."""
        if self._region_cache is None or self._region_cache.shape != shape:
            v, u = np.mgrid[0 : shape[0], 0 : shape[1]]
            pts = pixel_to_plane(np.stack([u.ravel(), v.ravel()], 1), self.intrinsics, self.extrinsics, BLOCK_CENTRE_Z)
            (x0, y0), (x1, y1) = TABLE_REGION
            with np.errstate(invalid="ignore"):
                inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
            self._region_cache = inside.reshape(shape)
        return self._region_cache

    def locate_pixel(self, rgb: np.ndarray, min_visible: float = 0.0) -> np.ndarray | None:
        """`(2,)` (u, v) centroid of the largest block-coloured region; None when there is none or it covers
        less than `min_visible` of the unoccluded block's area (e.g. the arm hides part of it)."""
        blobs = _blobs(self.block_mask(rgb))
        if not blobs or len(blobs[0]) < min_visible * self.area:
            return None
        rows, cols = blobs[0][:, 0], blobs[0][:, 1]
        return np.array([cols.mean(), rows.mean()])

    def locate(self, rgb: np.ndarray, min_visible: float = 0.0) -> np.ndarray | None:
        """`(2,)` world (x, y) of the block centre seen in `rgb` `(H, W, 3)` uint8, or None (see `locate_pixel`)."""
        uv = self.locate_pixel(rgb, min_visible)
        if uv is None:
            return None
        return pixel_to_plane(uv[None], self.intrinsics, self.extrinsics, BLOCK_CENTRE_Z)[0, :2]

    def distance(self, rgb: np.ndarray, min_visible: float = 0.0) -> float:
        """Seen block-to-target distance (m); inf when the block is not seen (see `locate_pixel`)."""
        xy = self.locate(rgb, min_visible)
        return float("inf") if xy is None else float(np.hypot(*(xy - self.target)))


def _nearest(px: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """`(N,)` distance from each of `px` `(N, 3)` to its nearest row of `colours` `(C, 3)`."""
    d2 = (px**2).sum(1)[:, None] - 2 * px @ colours.T + (colours**2).sum(1)[None]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))
