"""Shared pieces of the built-in pybullet worlds: camera model, rendering, generated assets, env base.

Conventions used throughout `actwm.sim`:

* intrinsics `K` (3, 3): pinhole in pixels, `u = fx * x / z + cx`, `v = fy * y / z + cy`, OpenCV pixel
  convention: the centre of pixel `(row i, column j)` is `(u, v) = (j, i)`, so a point projects into pixel
  `(round(v), round(u))`. The principal point was measured on pybullet's tiny renderer (back-projected
  depth of planes lands on the planes exactly): `cx = W/2`, `cy = H/2 - 1` (its row flip shifts rows by
  one pixel).
* extrinsics `E` (4, 4): world-to-camera in the OpenCV convention (x right, y down, z forward):
  `p_cam = E[:3, :3] @ p_world + E[:3, 3]`.
* depth (H, W) float32: metric z-depth along the optical axis (not the ray length), `far` where nothing
  is hit.
* segmentation (H, W) int32: pybullet body unique id of the visible object, -1 for background.
"""

from __future__ import annotations

import colorsys
import copy
import hashlib
import itertools
import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

from actwm.sim.bullet import p

# OpenGL camera (x right, y up, looks along -z) <-> OpenCV camera (x right, y down, looks along +z).
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class PinholeCamera:
    """A square-pixel pinhole camera rendered with pybullet's tiny renderer.

    Attributes:
        width, height: image size in pixels.
        fov_deg: vertical field of view in degrees.
        near, far: clipping planes in metres (depth beyond `far` reads as `far`).
        supersample: odd factor s >= 1: render at s x the size, average each s x s block into one RGB pixel
            (anti-aliasing: without it, small textures alias and shimmer as the camera moves), and take
            depth and segmentation from each block's centre sample, i.e. at the low-res pixel centre.
    """

    width: int
    height: int
    fov_deg: float
    near: float = 0.05
    far: float = 20.0
    supersample: int = 1

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera size must be at least 8x8 pixels, got {self.width}x{self.height}")
        if not 1.0 < self.fov_deg < 179.0:
            raise ValueError(f"camera fov_deg must be in (1, 179), got {self.fov_deg}")
        if not 0 < self.near < self.far:
            raise ValueError(f"camera needs 0 < near < far, got near={self.near} far={self.far}")
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(
                f"camera supersample must be an odd integer >= 1 (a centre sample per pixel), got {self.supersample}"
            )

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) float32 pinhole matrix K in pixels.

        pybullet's renders put the principal point at (W/2, H/2 - 1) (measured by back-projecting depth); a
        pixel of an s-times supersampled render maps to low-res coordinate (u - (s - 1)/2) / s.
        """
        s = self.supersample
        fy = 0.5 * self.height / math.tan(math.radians(self.fov_deg) / 2)
        cx = self.width / 2 - (s - 1) / (2 * s)
        cy = self.height / 2 - (s + 1) / (2 * s)
        return np.array([[fy, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float32)

    @property
    def projection_matrix(self) -> list[float]:
        return list(p.computeProjectionMatrixFOV(self.fov_deg, self.width / self.height, self.near, self.far))

    def render(self, client: int, extrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render from a world-to-camera (OpenCV) pose.

        Returns:
            rgb (H, W, 3) uint8, depth (H, W) float32 metres, segmentation (H, W) int32.
        """
        view = (_GL_FROM_CV @ np.asarray(extrinsics, dtype=np.float64)).T.reshape(-1).tolist()
        s = self.supersample
        h, w = self.height * s, self.width * s
        _, _, rgba, zbuf, seg = p.getCameraImage(
            w,
            h,
            viewMatrix=view,
            projectionMatrix=self.projection_matrix,
            renderer=p.ER_TINY_RENDERER,
            shadow=0,
            physicsClientId=client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3]
        depth = zbuffer_to_depth(np.asarray(zbuf, dtype=np.float64).reshape(h, w), self.near, self.far)
        segmentation = np.asarray(seg, dtype=np.int32).reshape(h, w)
        if s == 1:
            return rgb.copy(), depth, segmentation
        blocks = rgb.reshape(self.height, s, self.width, s, 3).astype(np.float32).mean(axis=(1, 3))
        centre = (slice(s // 2, None, s), slice(s // 2, None, s))
        return np.round(blocks).astype(np.uint8), depth[centre].copy(), segmentation[centre].copy()


def resolve_config(env_name: str, cls: type, config: Any, kwargs: dict[str, Any]) -> Any:
    """An env's settings: `config` as given, or `cls(**kwargs)`; ValueError naming the env on a mix or bad key."""
    if config is not None and kwargs:
        raise ValueError(f"{env_name}: pass either config= or keyword settings, not both (got {sorted(kwargs)})")
    try:
        return config or cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{env_name}: unknown setting ({e}); settings: {', '.join(cls.__dataclass_fields__)}")


def zbuffer_to_depth(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL z-buffer values in [0, 1] -> metric z-depth (float32), same shape."""
    depth = far * near / (far - (far - near) * zbuf)
    return np.minimum(depth, far).astype(np.float32)


def look_at_extrinsics(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) float64 world-to-camera (OpenCV) matrix of a camera at `eye` looking at `target`."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at_extrinsics: viewing direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return rotation_to_extrinsics(np.stack([x, y, z]), eye)


def rotation_to_extrinsics(r_cam_from_world: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Rows of `r_cam_from_world` are the camera x, y, z axes in world coordinates."""
    e = np.eye(4)
    e[:3, :3] = r_cam_from_world
    e[:3, 3] = -r_cam_from_world @ np.asarray(eye, dtype=np.float64)
    return e


def distinct_colours(
    rng: np.random.Generator, n: int, sat: tuple[float, float] = (0.55, 0.95), val: tuple[float, float] = (0.55, 0.95)
) -> np.ndarray:
    """`n` RGB colours in [0, 1] with evenly spread, randomly rotated and shuffled hues: (n, 3)."""
    hues = (rng.uniform() + np.arange(n) / max(n, 1) + rng.uniform(-0.2, 0.2, n) / max(n, 1)) % 1.0
    rng.shuffle(hues)
    out = [colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)) for h in hues]
    return np.asarray(out, dtype=np.float64).reshape(n, 3)


def pattern_texture(
    rng: np.random.Generator,
    kind: str,
    base: np.ndarray,
    size: tuple[int, int] = (64, 64),
    periods: tuple[int, int] = (4, 4),
) -> np.ndarray:
    """A (H, W, 3) uint8 texture: `kind` in {checker, hstripes, vstripes, bricks, noise, panels} on colour `base`."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    dark = np.clip(base * rng.uniform(0.35, 0.6), 0, 1)
    light = np.clip(base + (1 - base) * rng.uniform(0.0, 0.35), 0, 1)
    py, px = max(h // periods[0], 1), max(w // periods[1], 1)
    if kind == "checker":
        mask = ((yy // py + xx // px) % 2).astype(bool)
    elif kind == "hstripes":
        mask = (yy // max(py // 2, 1)) % 2 == 0
    elif kind == "vstripes":
        mask = (xx // max(px // 2, 1)) % 2 == 0
    elif kind == "bricks":
        row = yy // max(py // 2, 1)
        shift = (row % 2) * (px // 2)
        mask = ((yy % max(py // 2, 1)) > 1) & (((xx + shift) % px) > 1)
    elif kind == "panels":
        mask = ((xx % px) > px // 8) & ((yy % py) > py // 8)
    elif kind == "noise":
        coarse = rng.uniform(size=(periods[0] * 2, periods[1] * 2))
        mask = np.kron(coarse, np.ones((h // (periods[0] * 2) + 1, w // (periods[1] * 2) + 1)))[:h, :w] > 0.5
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    img = np.where(mask[..., None], light, dark)
    img = img + rng.normal(0, 0.04, img.shape)  # fine grain helps optical flow and tracking
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


class AssetCache:
    """Generated meshes and textures of one env in a private temporary folder (removed on `close`).

    File names encode their content, so pybullet's own caching by file name can never hand back stale data.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="actwm_sim_"))
        self.loaded = 0  # textures loaded into the current client (pybullet never frees them)

    def box_mesh(self, half_extents: Any, tile: float) -> str:
        """Path of an OBJ box with the given half extents whose faces repeat a texture every `tile` metres."""
        he = np.round(np.asarray(half_extents, dtype=np.float64), 4)
        name = f"box_{he[0]:.4f}_{he[1]:.4f}_{he[2]:.4f}_{tile:.3f}.obj"
        path = self.dir / name
        if not path.exists():
            path.write_text(_box_obj(he, tile))
        return str(path)

    def texture(self, client: int, image: np.ndarray) -> int:
        digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]
        path = self.dir / f"tex_{digest}.png"
        if not path.exists():
            Image.fromarray(image).save(path)
        self.loaded += 1
        return p.loadTexture(str(path), physicsClientId=client)

    def clear(self) -> None:
        """Delete the generated files (pybullet has loaded them); keeps disk use flat over many scenes."""
        for f in self.dir.iterdir():
            f.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _box_obj(he: np.ndarray, tile: float) -> str:
    """OBJ text of an axis-aligned box centred at 0 with UVs in metres / tile (texture repeats).

    Each face is listed with axes (normal n, u, v) where u x v = n, so corners in (u, v) order are
    counter-clockwise seen from outside; side faces have v pointing up.
    """
    faces = [
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
        ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
        ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
        ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
        ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
    ]
    verts, faces_txt = [], []
    for f, (n, u, v) in enumerate(faces):
        n, u, v = (np.asarray(x, dtype=np.float64) for x in (n, u, v))
        lu, lv = float(np.abs(u) @ he), float(np.abs(v) @ he)
        for a, b in [(-1, -1), (1, -1), (1, 1), (-1, 1)]:
            q = n * he + a * u * he + b * v * he
            verts.append("v %.5f %.5f %.5f" % tuple(q))
            verts.append("vt %.5f %.5f" % ((a + 1) * lu / tile, (b + 1) * lv / tile))
        verts.append("vn %.1f %.1f %.1f" % tuple(n))
        k = 4 * f + 1
        for tri in [(k, k + 1, k + 2), (k, k + 2, k + 3)]:
            faces_txt.append("f " + " ".join(f"{i}/{i}/{f + 1}" for i in tri))
    return "\n".join(verts + faces_txt) + "\n"


@dataclass(frozen=True, eq=False)
class SimSnapshot:
    """Opaque exact state of one built-in env, from `env.unwrapped.snapshot()`; give it back to `restore`.

    Valid only for the env that took it and only until that env's next `reset()` (which rebuilds the
    pybullet world and invalidates its saved states); `restore` raises ValueError otherwise. Dropping the
    snapshot frees its pybullet state.
    """

    env_name: str
    env_token: int
    scene_id: int | None
    epoch: int
    bullet_state: int
    fields: dict[str, Any] = field(repr=False)
    rngs: tuple[dict[str, Any], dict[str, Any] | None] = field(repr=False)


_ENV_TOKENS = itertools.count(1)


def _remove_bullet_state(env_ref: weakref.ref, epoch: int, state: int) -> None:
    """Free a snapshot's pybullet state if its env still lives in the same world (ids are reused after reset)."""
    env = env_ref()
    if env is None or env.client is None or env._epoch != epoch:
        return
    try:
        p.removeState(state, physicsClientId=env.client)
    except p.error:
        pass


class SimEnv(gym.Env):
    """Base of the built-in worlds: one pybullet DIRECT client per env, a camera, seeded scenes.

    Exact snapshot / restore: `snapshot()` captures pybullet's state (`saveState`, in memory) and every
    attribute named in `snapshot_fields` (the robot pose, step counter, gripper, ...), the scene-seed RNG,
    gymnasium's `np_random` and the last observation (what `render()` returns); `restore()` puts them all
    back, so the next `step` returns bit-identical observations and info. Subclasses whose pybullet world
    never changes after `reset` (`static_world = True`: nav's robot is kinematic, not a body) share one
    saved state per scene instead of saving one per snapshot (saveState costs ~5 ms there, a step ~2 ms).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}
    env_name = ""
    fps = 5.0
    snapshot_fields: tuple[str, ...] = ()
    static_world = False

    def __init__(self, size: int, seed: int | None) -> None:
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
        self.size = int(size)
        self.client = p.connect(p.DIRECT)
        self.connections = 1  # pybullet clients opened so far (see texture_budget)
        self.assets = AssetCache()
        self._seed_rng = np.random.default_rng(seed)
        self._pending_seed = seed
        self.scene_id: int | None = None
        self.static_ids: list[int] = []
        self._last_obs: dict[str, np.ndarray] | None = None
        self.render_mode = "rgb_array"
        self._token = next(_ENV_TOKENS)
        self._epoch = 0  # bumped whenever the pybullet world is rebuilt: older snapshots become invalid
        self._static_state: int | None = None  # the one saved state of a static world (per epoch)

    # pybullet keeps every loaded texture until the client disconnects (~12 kB each): start a fresh
    # client once this many were loaded, so memory stays flat over thousands of scenes.
    texture_budget = 1500

    def _scene_info(self) -> dict[str, Any]:
        """The `info` keys every world reports first: its scene seed, the segmentation ids of static scenery
        (walls, floor: what SCS leaves out) and its frame rate."""
        return {"scene_id": self.scene_id, "static_ids": list(self.static_ids), "fps": self.fps}

    def _fresh_client_if_needed(self) -> None:
        if self.assets.loaded > self.texture_budget:
            p.disconnect(physicsClientId=self.client)
            self.client = p.connect(p.DIRECT)
            self.connections += 1
            self.assets.loaded = 0

    def _new_world(self) -> None:
        """Start a new pybullet world (fresh client if the texture budget is spent, then resetSimulation)."""
        self._epoch += 1
        self._static_state = None
        self._fresh_client_if_needed()
        p.resetSimulation(physicsClientId=self.client)

    # -- snapshot / restore ------------------------------------------------------------------------
    def snapshot(self) -> SimSnapshot:
        """The exact current state (opaque); see the class docstring. Requires a prior `reset()`."""
        if self.scene_id is None:
            raise RuntimeError(f"{self.env_name}: call reset() before snapshot()")
        if self.static_world:
            if self._static_state is None:
                self._static_state = p.saveState(physicsClientId=self.client)
            state = self._static_state
        else:
            state = p.saveState(physicsClientId=self.client)
        names = (*self.snapshot_fields, "_last_obs", "_pending_seed")
        fields = {name: copy.deepcopy(getattr(self, name)) for name in names}
        rng = self._np_random.bit_generator.state if self._np_random is not None else None
        snap = SimSnapshot(
            env_name=self.env_name,
            env_token=self._token,
            scene_id=self.scene_id,
            epoch=self._epoch,
            bullet_state=state,
            fields=fields,
            rngs=(copy.deepcopy(self._seed_rng.bit_generator.state), copy.deepcopy(rng)),
        )
        if not self.static_world:
            weakref.finalize(snap, _remove_bullet_state, weakref.ref(self), self._epoch, state)
        return snap

    def restore(self, snapshot: SimSnapshot) -> None:
        """Put the env back exactly into `snapshot`'s state (ValueError if it is not this env's current scene)."""
        if not isinstance(snapshot, SimSnapshot):
            got = type(snapshot).__name__
            raise ValueError(f"{self.env_name}: restore() needs a snapshot from snapshot(), got {got}")
        if snapshot.env_token != self._token:
            raise ValueError(f"{self.env_name}: the snapshot was taken by another env ({snapshot.env_name})")
        if snapshot.epoch != self._epoch:
            raise ValueError(
                f"{self.env_name}: the snapshot belongs to an earlier reset (scene {snapshot.scene_id}); "
                "a snapshot is valid only until the next reset()"
            )
        p.restoreState(stateId=snapshot.bullet_state, physicsClientId=self.client)
        for name, value in snapshot.fields.items():
            setattr(self, name, copy.deepcopy(value))
        seed_state, np_state = snapshot.rngs
        self._seed_rng.bit_generator.state = copy.deepcopy(seed_state)
        if np_state is not None:
            self.np_random.bit_generator.state = copy.deepcopy(np_state)
        self.scene_id = snapshot.scene_id

    # -- seeding -----------------------------------------------------------------------------------
    def _next_scene_id(self, seed: int | None) -> int:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is None:
            return int(self._seed_rng.integers(0, 2**31 - 1))
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self._seed_rng = np.random.default_rng([int(seed), 7919])
        return int(seed)

    # -- validation --------------------------------------------------------------------------------
    def _check_action(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        shape = self.action_space.shape
        if a.shape != shape:
            raise ValueError(
                f"{self.env_name}: action must have shape {shape} ({', '.join(self.action_names)}), got {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.env_name}: action contains NaN or inf: {a}")
        low, high = self.action_space.low, self.action_space.high
        bad = np.nonzero((a < low - 1e-6) | (a > high + 1e-6))[0]
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"{self.env_name}: action dimension {self.action_names[i]!r} = {a[i]:.4g} is outside "
                f"[{low[i]:.4g}, {high[i]:.4g}]"
            )
        return a

    def render(self) -> np.ndarray:
        if self._last_obs is None:
            raise RuntimeError(f"{self.env_name}: call reset() before render()")
        return self._last_obs["rgb"]

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = None
        if getattr(self, "assets", None) is not None:
            self.assets.close()

    def __del__(self) -> None:  # best effort; close() is the documented way
        try:
            self.close()
        except Exception:
            pass
