"""`nav`: a mobile robot with a forward-facing camera in procedurally generated, textured rooms.

Each seed generates its own room (scene id == seed): a 7-9 m walled room with a checkered floor,
four walls with their own colour and pattern, and 5-10 static structures (boxes, pillars, tables,
towers) with distinct colours at random places. The robot is a disc of radius 0.2 m moved
kinematically; it is not rendered in its own camera. A step that would pass through a wall or a
structure is refused: the robot stays and `info["collided"]` is True.

Actions (`nav3`): (dx [m], dy [m], dyaw [rad]) in the robot frame of the current step, x forward,
y left, plus the discrete vocabulary `DISCRETE_ACTIONS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from actwm.checks import require, require_at_least, require_range
from actwm.geometry import se2_compose, se2_relative, wrap_angle
from actwm.sim.bullet import p
from actwm.sim.common import (
    PinholeCamera,
    SimEnv,
    distinct_colours,
    pattern_texture,
    resolve_config,
    rotation_to_extrinsics,
)

DISCRETE_ACTIONS: dict[str, tuple[float, float, float]] = {
    "forward": (0.25, 0.0, 0.0),
    "left": (0.0, 0.0, math.pi / 8),
    "right": (0.0, 0.0, -math.pi / 8),
    "stop": (0.0, 0.0, 0.0),
}

STATE_NAMES = ("x", "y", "yaw", "vx", "vy", "vyaw")
WALL_PATTERNS = ("hstripes", "vstripes", "bricks", "panels", "checker")
BOX_PATTERNS = ("checker", "hstripes", "vstripes", "panels", "noise", "bricks")


@dataclass(frozen=True)
class NavConfig:
    """Settings of the `nav` world (all lengths in metres).

    Attributes:
        fov_deg: vertical (= horizontal) field of view of the square camera.
        camera_height: camera height above the floor.
        camera_pitch_deg: downward tilt of the camera.
        room_size: range of the room side lengths drawn per scene.
        n_structures: inclusive range of the number of static structures per scene.
        robot_radius: collision radius of the robot disc.
        max_steps: steps after which `truncated` becomes True.
        max_translation, max_rotation: action-space bounds per step (m, rad).
        supersample: odd anti-aliasing factor of the camera (1 = off; see `PinholeCamera`).
    """

    fov_deg: float = 75.0
    camera_height: float = 0.6
    camera_pitch_deg: float = 10.0
    room_size: tuple[float, float] = (7.0, 9.0)
    n_structures: tuple[int, int] = (5, 10)
    robot_radius: float = 0.2
    max_steps: int = 500
    max_translation: float = 0.5
    max_rotation: float = math.pi / 2
    far: float = 20.0
    supersample: int = 1

    def __post_init__(self) -> None:
        lo, hi = self.room_size
        require(3.0 <= lo <= hi, self, "room_size", "(low, high) with 3 <= low <= high")
        n0, n1 = self.n_structures
        require(0 <= n0 <= n1 <= 16, self, "n_structures", "(low, high) with 0 <= low <= high <= 16")
        require_range(self, "robot_radius", 0, 1, closed="()")
        require_range(self, "camera_height", 0, 3, closed="()")
        require_at_least(self, 1, "max_steps")


@dataclass(frozen=True)
class Footprint:
    """Planar outline of a static obstacle: an oriented rectangle (half sizes hx, hy) or a circle (radius hx)."""

    kind: str
    cx: float
    cy: float
    hx: float
    hy: float = 0.0
    yaw: float = 0.0

    @property
    def bound(self) -> float:
        return self.hx if self.kind == "circle" else math.hypot(self.hx, self.hy)

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance from points to the outline (0 inside)."""
        dx, dy = np.asarray(x) - self.cx, np.asarray(y) - self.cy
        if self.kind == "circle":
            return np.maximum(np.hypot(dx, dy) - self.hx, 0.0)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        return np.hypot(np.maximum(np.abs(lx) - self.hx, 0.0), np.maximum(np.abs(ly) - self.hy, 0.0))


class NavEnv(SimEnv):
    """Egocentric navigation world. See the module docstring; create with `actwm.sim.make("nav")`."""

    env_name = "nav"
    fps = 5.0
    action_space_name = "nav3"
    action_names = ("dx", "dy", "dyaw")
    state_names = STATE_NAMES
    snapshot_fields = ("pose", "velocity", "steps")
    static_world = True  # the robot is kinematic (not a pybullet body): steps never change the pybullet world

    def __init__(self, size: int = 64, seed: int | None = None, config: NavConfig | None = None, **kwargs: Any):
        self.config = resolve_config("nav", NavConfig, config, kwargs)
        super().__init__(size, seed)
        cfg = self.config
        self.camera = PinholeCamera(
            self.size, self.size, cfg.fov_deg, near=0.05, far=cfg.far, supersample=cfg.supersample
        )
        t, r = cfg.max_translation, cfg.max_rotation
        self.action_space = gym.spaces.Box(np.array([-t, -t, -r], np.float32), np.array([t, t, r], np.float32))
        h = w = self.size
        self.observation_space = gym.spaces.Dict(
            {
                "rgb": gym.spaces.Box(0, 255, (h, w, 3), np.uint8),
                "depth": gym.spaces.Box(0.0, cfg.far, (h, w), np.float32),
                "segmentation": gym.spaces.Box(-1, 2**31 - 1, (h, w), np.int32),
                "intrinsics": gym.spaces.Box(-np.inf, np.inf, (3, 3), np.float32),
                "extrinsics": gym.spaces.Box(-np.inf, np.inf, (4, 4), np.float32),
                "state": gym.spaces.Box(-np.inf, np.inf, (len(STATE_NAMES),), np.float32),
                "pose": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            }
        )
        self.footprints: list[Footprint] = []
        self.structures: list[dict[str, Any]] = []  # {"id", "kind", "footprint", "height"} per structure
        self.walls: list[dict[str, Any]] = []  # {"id", "axis", "plane"}: inner face at coordinate `plane`
        self.room_half = (4.0, 4.0)
        self.pose = np.zeros(3)
        self.velocity = np.zeros(3)
        self.steps = 0

    # -- public helpers ----------------------------------------------------------------------------
    def discrete(self, name_or_index: str | int) -> np.ndarray:
        """The (3,) float32 action of a discrete command: a name of `DISCRETE_ACTIONS` or its index."""
        names = list(DISCRETE_ACTIONS)
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if not 0 <= name_or_index < len(names):
                raise ValueError(
                    f"nav: discrete action index {name_or_index} out of range 0..{len(names) - 1} ({names})"
                )
            name_or_index = names[int(name_or_index)]
        if name_or_index not in DISCRETE_ACTIONS:
            raise ValueError(f"nav: unknown discrete action {name_or_index!r}; choose from {names}")
        return np.asarray(DISCRETE_ACTIONS[name_or_index], dtype=np.float32)

    def clearance(self, x: float, y: float) -> float:
        """Distance from a point to the nearest wall or structure (metres)."""
        hx, hy = self.room_half
        d = min(hx - abs(x), hy - abs(y))
        for fp in self.footprints:
            d = min(d, float(fp.distance(x, y)))
        return d

    def free_segment(self, start: Any, end: Any) -> bool:
        """True when the robot disc can move straight from `start` (x, y) to `end` (x, y): the collision test of
        `step` (points every <= 4 cm along the segment, both ends included, against walls and structures)."""
        (x0, y0), (x1, y1) = (np.asarray(v, dtype=np.float64)[:2] for v in (start, end))
        n = max(2, int(math.ceil(math.hypot(x1 - x0, y1 - y0) / 0.04)) + 1)
        ts = np.linspace(0.0, 1.0, n)
        return not bool(np.any(self._collides(x0 + ts * (x1 - x0), y0 + ts * (y1 - y0))))

    def render_pose(self, pose: Any) -> dict[str, np.ndarray]:
        """Render the current scene from robot pose (x, y, yaw) without moving the robot.

        Returns `rgb` (H, W, 3) uint8, `depth` (H, W) float32, `segmentation` (H, W) int32: exactly what
        `reset(options={"pose": pose})` would observe (the world is static).
        """
        if self.scene_id is None:
            raise RuntimeError("nav: call reset() before render_pose()")
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (3,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"nav: render_pose needs a finite (x, y, yaw), got {pose}")
        rgb, depth, seg = self.camera.render(self.client, self.camera_extrinsics(pose))
        return {"rgb": rgb, "depth": depth, "segmentation": seg}

    def camera_extrinsics(self, pose: np.ndarray | None = None) -> np.ndarray:
        """(4, 4) float64 world-to-camera (OpenCV) matrix of the robot camera at `pose` (x, y, yaw)."""
        x, y, yaw = self.pose if pose is None else pose
        pitch = math.radians(self.config.camera_pitch_deg)
        fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
        right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        down = np.cross(fwd, right)
        return rotation_to_extrinsics(np.stack([right, down, fwd]), np.array([x, y, self.config.camera_height]))

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.scene_id = self._next_scene_id(seed)
        super().reset(seed=self.scene_id)
        options = dict(options or {})
        unknown = sorted(set(options) - {"pose"})
        if unknown:
            raise ValueError(f"nav: unknown reset option(s) {unknown}; known: ['pose']")
        rng = np.random.default_rng([self.scene_id, 1])
        self._new_world()
        self._build_scene(rng)
        self.assets.clear()
        pose = options.get("pose")
        if pose is not None:
            pose = np.asarray(pose, dtype=np.float64)
            if pose.shape != (3,) or not np.all(np.isfinite(pose)):
                raise ValueError(f"nav: options['pose'] must be finite (x, y, yaw), got {pose}")
            if self._collides(pose[0], pose[1]):
                raise ValueError(f"nav: options['pose'] {pose.tolist()} is inside a wall or structure")
            self.pose = np.array([pose[0], pose[1], float(wrap_angle(pose[2]))])
        else:
            self.pose = self._free_pose(rng)
        self.velocity = np.zeros(3)
        self.steps = 0
        obs = self._observe()
        return obs, self._info(collided=False)

    def step(self, action: Any):
        if self.scene_id is None:
            raise RuntimeError("nav: call reset() before step()")
        motion = self._check_action(action)
        new = se2_compose(self.pose, motion)
        collided = not self.free_segment(self.pose[:2], new[:2])
        old = self.pose.copy()
        if not collided:
            self.pose = new
        self.velocity = se2_relative(old, self.pose) * self.fps
        self.steps += 1
        obs = self._observe()
        truncated = self.steps >= self.config.max_steps
        return obs, 0.0, False, truncated, self._info(collided=collided)

    # -- internals ---------------------------------------------------------------------------------
    def _collides(self, x: Any, y: Any) -> np.ndarray:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        r = self.config.robot_radius
        hx, hy = self.room_half
        hit = (np.abs(x) > hx - r) | (np.abs(y) > hy - r)
        for fp in self.footprints:
            hit |= fp.distance(x, y) < r
        return hit

    def _free_pose(self, rng: np.random.Generator) -> np.ndarray:
        hx, hy = self.room_half
        for _ in range(2000):
            x, y = rng.uniform(-hx + 0.5, hx - 0.5), rng.uniform(-hy + 0.5, hy - 0.5)
            if self.clearance(x, y) > self.config.robot_radius + 0.3:
                # prefer a heading with open space ahead, so the first frames are not a wall close-up
                for _ in range(24):
                    yaw = rng.uniform(-math.pi, math.pi)
                    ahead = np.array([0.5, 1.0, 1.5])
                    if not np.any(self._collides(x + ahead * math.cos(yaw), y + ahead * math.sin(yaw))):
                        break
                return np.array([x, y, yaw])
        raise RuntimeError(f"nav: scene {self.scene_id} has no free start pose")

    def _observe(self) -> dict[str, np.ndarray]:
        ext = self.camera_extrinsics()
        rgb, depth, seg = self.camera.render(self.client, ext)
        state = np.concatenate([self.pose, self.velocity]).astype(np.float32)
        self._last_obs = {
            "rgb": rgb,
            "depth": depth,
            "segmentation": seg,
            "intrinsics": self.camera.intrinsics,
            "extrinsics": ext.astype(np.float32),
            "state": state,
            "pose": self.pose.astype(np.float32),
        }
        return dict(self._last_obs)

    def _info(self, collided: bool) -> dict[str, Any]:
        return {
            **self._scene_info(),
            "collided": collided,
            "steps": self.steps,
        }

    # -- scene generation --------------------------------------------------------------------------
    def _build_scene(self, rng: np.random.Generator) -> None:
        cfg = self.config
        w, h = (float(v) for v in rng.uniform(*cfg.room_size, size=2))
        self.room_half = (w / 2, h / 2)
        n_struct = int(rng.integers(cfg.n_structures[0], cfg.n_structures[1] + 1))
        colours = distinct_colours(rng, 4 + n_struct)
        self.static_ids, self.footprints, self.structures, self.walls = [], [], [], []
        self._floor(rng, w, h)
        self._walls(rng, w, h, colours[:4])
        kinds = ("box", "pillar", "table", "tower")
        for i in range(n_struct):
            kind = kinds[int(rng.integers(len(kinds)))] if i >= len(kinds) else kinds[i]
            placed = self._place(rng, kind, colours[4 + i])
            if placed is not None:
                body, height = placed
                self.static_ids.append(body)
                self.structures.append({"id": body, "kind": kind, "footprint": self.footprints[-1], "height": height})

    def _textured_box(self, he: Any, pos: Any, yaw: float, image: np.ndarray, tile: float) -> int:
        vs = p.createVisualShape(p.GEOM_MESH, fileName=self.assets.box_mesh(he, tile), physicsClientId=self.client)
        body = p.createMultiBody(
            0, -1, vs, list(pos), p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=self.client
        )
        p.changeVisualShape(
            body, -1, textureUniqueId=self.assets.texture(self.client, image), physicsClientId=self.client
        )
        return body

    def _floor(self, rng: np.random.Generator, w: float, h: float) -> None:
        base = distinct_colours(rng, 1, sat=(0.1, 0.35), val=(0.55, 0.8))[0]
        img = pattern_texture(rng, "checker", base, (64, 64), (2, 2))
        self._textured_box((w / 2 + 0.5, h / 2 + 0.5, 0.01), (0, 0, -0.01), 0.0, img, float(rng.uniform(0.8, 1.6)))

    def _walls(self, rng: np.random.Generator, w: float, h: float, colours: np.ndarray) -> None:
        height, t = float(rng.uniform(1.6, 2.4)), 0.1
        specs = [
            ((w / 2 + t, 0), (t, h / 2 + 2 * t)),
            ((-w / 2 - t, 0), (t, h / 2 + 2 * t)),
            ((0, h / 2 + t), (w / 2 + 2 * t, t)),
            ((0, -h / 2 - t), (w / 2 + 2 * t, t)),
        ]
        planes = [(0, w / 2), (0, -w / 2), (1, h / 2), (1, -h / 2)]
        for ((cx, cy), (hx, hy)), colour, (axis, plane) in zip(specs, colours, planes):
            kind = WALL_PATTERNS[int(rng.integers(len(WALL_PATTERNS)))]
            img = pattern_texture(rng, kind, colour, (64, 64), (4, 4))
            body = self._textured_box(
                (hx, hy, height / 2), (cx, cy, height / 2), 0.0, img, float(rng.uniform(1.0, 2.0))
            )
            self.static_ids.append(body)
            self.walls.append({"id": body, "axis": axis, "plane": plane, "height": height})

    def _fits(self, fp: Footprint, clearance: float = 0.55) -> bool:
        hx, hy = self.room_half
        if abs(fp.cx) + fp.bound > hx - clearance or abs(fp.cy) + fp.bound > hy - clearance:
            return False
        return all(math.hypot(fp.cx - o.cx, fp.cy - o.cy) > fp.bound + o.bound + clearance for o in self.footprints)

    def _place(self, rng: np.random.Generator, kind: str, colour: np.ndarray) -> tuple[int, float] | None:
        hx, hy = self.room_half
        for _ in range(200):
            cx, cy, yaw = rng.uniform(-hx, hx), rng.uniform(-hy, hy), float(rng.uniform(0, math.pi))
            if kind == "pillar":
                fp = Footprint("circle", cx, cy, float(rng.uniform(0.15, 0.35)))
            elif kind == "table":
                fp = Footprint("rect", cx, cy, float(rng.uniform(0.4, 0.7)), float(rng.uniform(0.25, 0.45)), yaw)
            else:
                fp = Footprint("rect", cx, cy, float(rng.uniform(0.2, 0.55)), float(rng.uniform(0.2, 0.55)), yaw)
            if self._fits(fp):
                break
        else:
            return None
        self.footprints.append(fp)
        return getattr(self, f"_make_{kind}")(rng, fp, colour)

    def _make_box(self, rng: np.random.Generator, fp: Footprint, colour: np.ndarray) -> tuple[int, float]:
        hz = float(rng.uniform(0.2, 0.8))
        img = pattern_texture(rng, BOX_PATTERNS[int(rng.integers(len(BOX_PATTERNS)))], colour, (64, 64), (4, 4))
        tile = float(rng.uniform(0.3, 0.8))
        return self._textured_box((fp.hx, fp.hy, hz), (fp.cx, fp.cy, hz), fp.yaw, img, tile), 2 * hz

    def _make_pillar(self, rng: np.random.Generator, fp: Footprint, colour: np.ndarray) -> tuple[int, float]:
        height = float(rng.uniform(1.2, 2.4))
        cap = np.clip(colour * 0.45, 0, 1)
        c = self.client
        shaft = p.createVisualShape(
            p.GEOM_CYLINDER, radius=fp.hx, length=height, rgbaColor=[*colour, 1], physicsClientId=c
        )
        ring = p.createVisualShape(
            p.GEOM_CYLINDER, radius=fp.hx * 1.25, length=0.12, rgbaColor=[*cap, 1], physicsClientId=c
        )
        offsets = [(0, 0, height / 2), (0, 0, 0.06), (0, 0, height - 0.06)]
        return self._compound([shaft, ring, ring], offsets, fp), height

    def _make_table(self, rng: np.random.Generator, fp: Footprint, colour: np.ndarray) -> tuple[int, float]:
        top_z = float(rng.uniform(0.55, 0.8))
        img = pattern_texture(rng, "panels", colour, (64, 64), (2, 2))
        c = self.client
        top = p.createVisualShape(
            p.GEOM_MESH, fileName=self.assets.box_mesh((fp.hx, fp.hy, 0.03), 0.5), physicsClientId=c
        )
        leg_he = (0.04, 0.04, top_z / 2)
        leg = p.createVisualShape(
            p.GEOM_BOX, halfExtents=leg_he, rgbaColor=[*np.clip(colour * 0.4, 0, 1), 1], physicsClientId=c
        )
        lx, ly = fp.hx - 0.07, fp.hy - 0.07
        offsets = [(0, 0, top_z - 0.03)] + [(sx * lx, sy * ly, top_z / 2) for sx in (-1, 1) for sy in (-1, 1)]
        body = self._compound([top, leg, leg, leg, leg], offsets, fp)
        p.changeVisualShape(body, -1, textureUniqueId=self.assets.texture(c, img), physicsClientId=c)
        return body, top_z

    def _make_tower(self, rng: np.random.Generator, fp: Footprint, colour: np.ndarray) -> tuple[int, float]:
        c = self.client
        shapes, offsets, z = [], [], 0.0
        n = int(rng.integers(2, 4))
        for k in range(n):
            shrink = 1.0 - 0.22 * k
            he = (fp.hx * shrink, fp.hy * shrink, float(rng.uniform(0.2, 0.4)))
            tint = np.clip(colour * (1.0 - 0.3 * (k % 2)) + 0.25 * (k % 2) * (1 - colour), 0, 1)
            shapes.append(p.createVisualShape(p.GEOM_BOX, halfExtents=he, rgbaColor=[*tint, 1], physicsClientId=c))
            offsets.append((0, 0, z + he[2]))
            z += 2 * he[2]
        return self._compound(shapes, offsets, fp), z

    def _compound(self, shapes: list[int], offsets: list[tuple[float, float, float]], fp: Footprint) -> int:
        """One static body: shapes[0] is the base, the rest are fixed links (one segmentation id)."""
        n = len(shapes) - 1
        base_off = offsets[0]
        rel = [tuple(np.subtract(o, base_off)) for o in offsets[1:]]
        return p.createMultiBody(
            baseMass=0,
            baseVisualShapeIndex=shapes[0],
            basePosition=[fp.cx, fp.cy, base_off[2]],
            baseOrientation=p.getQuaternionFromEuler([0, 0, fp.yaw]),
            linkMasses=[0] * n,
            linkCollisionShapeIndices=[-1] * n,
            linkVisualShapeIndices=shapes[1:],
            linkPositions=rel,
            linkOrientations=[[0, 0, 0, 1]] * n,
            linkInertialFramePositions=[[0, 0, 0]] * n,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * n,
            linkParentIndices=[0] * n,
            linkJointTypes=[p.JOINT_FIXED] * n,
            linkJointAxis=[[0, 0, 1]] * n,
            physicsClientId=self.client,
        )
