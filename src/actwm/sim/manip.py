"""`manip`: a KUKA iiwa arm with a two-finger gripper at a table with coloured blocks.

Each seed generates its own scene (scene id == seed): table and floor textures, block colours, sizes and
positions. A fixed, calibrated third-person camera looks at the table. Actions (`ee7`) are end-effector
deltas in the robot base frame (= world frame here) `(dx, dy, dz, droll, dpitch, dyaw, gripper)`; the
gripper entry is an absolute command (0 open, 1 closed). Each step moves the end-effector target by the
delta (kept inside the workspace box, roll/pitch within `max_tilt` of pointing down), solves inverse
kinematics, and runs `substeps` physics steps at 240 Hz under position control, so blocks are pushed by
real contacts.

The end-effector is the iiwa flange (link 6); with the gripper pointing down, the finger tips are
about 0.27 m below it. The table top is at z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet_data

from actwm.checks import require, require_at_least
from actwm.geometry import wrap_angle
from actwm.sim.bullet import p
from actwm.sim.common import (
    PinholeCamera,
    SimEnv,
    distinct_colours,
    look_at_extrinsics,
    pattern_texture,
    resolve_config,
)

ARM_JOINTS = tuple(range(7))
EE_LINK = 6
GRIPPER_ANGLE_JOINT = 7
FINGER_JOINTS = (8, 11)  # left (opens negative), right (opens positive)
TIP_JOINTS = (10, 13)
FINGER_OPEN = 0.3
STATE_NAMES = tuple(f"q{i}" for i in range(7)) + (
    "finger_left",
    "finger_right",
    "ee_x",
    "ee_y",
    "ee_z",
    "ee_roll",
    "ee_pitch",
    "ee_yaw",
)
TABLE_CENTRE = np.array([0.62, 0.0])  # table top centre (x, y); the top is 0.84 x 1.2 m at z = 0
TABLE_INNER = np.array([0.37, 0.55])  # largest |offset| from TABLE_CENTRE of a block or target centre
TABLE_BOUNDS = "x in [0.25, 0.99], y in [-0.55, 0.55]"
_REST = (0.006418, 0.413184, -0.011401, -1.589317, 0.005379, 1.137684, -0.006539)
_LIMITS = (2.967, 2.094, 2.967, 2.094, 2.967, 2.094, 3.054)


@dataclass(frozen=True)
class ManipConfig:
    """Settings of the `manip` world (lengths in metres, angles in radians).

    Attributes:
        n_blocks: number of cubes on the table (fixed per env so `obs["objects"]` has a fixed shape).
        block_half: range of cube half sizes.
        workspace_low, workspace_high: box the end-effector (flange) target is kept in.
        home: end-effector position at reset.
        max_delta, max_rotation: action-space bounds per step.
        max_tilt: largest roll/pitch deviation of the target from pointing straight down.
        substeps: physics steps at 240 Hz per env step (24 -> 10 env steps per second).
        camera_eye, camera_target, fov_deg: the calibrated third-person camera.
        supersample: odd anti-aliasing factor of the camera (1 = off; see `PinholeCamera`).
    """

    n_blocks: int = 4
    block_half: tuple[float, float] = (0.028, 0.038)
    workspace_low: tuple[float, float, float] = (0.48, -0.35, 0.28)
    workspace_high: tuple[float, float, float] = (0.85, 0.35, 0.65)
    home: tuple[float, float, float] = (0.6, 0.0, 0.45)
    max_delta: float = 0.05
    max_rotation: float = 0.25
    max_tilt: float = 0.6
    substeps: int = 24
    max_steps: int = 500
    camera_eye: tuple[float, float, float] = (1.15, 0.3, 0.8)
    camera_target: tuple[float, float, float] = (0.62, 0.0, 0.1)
    fov_deg: float = 50.0
    supersample: int = 1

    def __post_init__(self) -> None:
        require(1 <= self.n_blocks <= 8, self, "n_blocks", "in 1..8")
        lo, hi = self.block_half
        require(0.01 <= lo <= hi <= 0.06, self, "block_half", "(low, high) with 0.01 <= low <= high <= 0.06")
        below = all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high))
        require(below, self, "workspace_low", f"below workspace_high = {self.workspace_high} on every axis")
        require_at_least(self, 1, "substeps", "max_steps")


class ManipEnv(SimEnv):
    """Table-top pushing world. See the module docstring; create with `actwm.sim.make("manip")`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    env_name = "manip"
    fps = 10.0
    action_space_name = "ee7"
    action_names = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
    state_names = STATE_NAMES
    snapshot_fields = ("target_pos", "target_rpy", "gripper", "steps")
    reset_options = ("blocks", "ee", "target")

    def __init__(self, size: int = 64, seed: int | None = None, config: ManipConfig | None = None, **kwargs: Any):
        self.config = resolve_config("manip", ManipConfig, config, kwargs)
        super().__init__(size, seed)
        cfg = self.config
        self.camera = PinholeCamera(self.size, self.size, cfg.fov_deg, near=0.05, far=6.0, supersample=cfg.supersample)
        self.extrinsics = look_at_extrinsics(cfg.camera_eye, cfg.camera_target)
        d, r = cfg.max_delta, cfg.max_rotation
        self.action_space = gym.spaces.Box(
            np.array([-d, -d, -d, -r, -r, -r, 0.0], np.float32), np.array([d, d, d, r, r, r, 1.0], np.float32)
        )
        h = w = self.size
        self.observation_space = gym.spaces.Dict(
            {
                "rgb": gym.spaces.Box(0, 255, (h, w, 3), np.uint8),
                "depth": gym.spaces.Box(0.0, self.camera.far, (h, w), np.float32),
                "segmentation": gym.spaces.Box(-1, 2**31 - 1, (h, w), np.int32),
                "intrinsics": gym.spaces.Box(-np.inf, np.inf, (3, 3), np.float32),
                "extrinsics": gym.spaces.Box(-np.inf, np.inf, (4, 4), np.float32),
                "state": gym.spaces.Box(-np.inf, np.inf, (len(STATE_NAMES),), np.float32),
                "objects": gym.spaces.Box(-np.inf, np.inf, (cfg.n_blocks, 7), np.float32),
            }
        )
        self.robot = -1
        self.table = -1
        self.blocks: list[int] = []
        self.block_half: list[float] = []
        self.target_pos = np.array(cfg.home, dtype=np.float64)
        self.target_rpy = np.array([math.pi, 0.0, math.pi])
        self.gripper = 0.0
        self.steps = 0
        self.target: np.ndarray | None = None  # (x, y, radius) of the target disc from reset options
        self.target_id = -1

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Build scene `seed` (see `actwm.sim.make`). `options` (all optional):

        * `blocks`: (n_blocks, 2) block centres (x, y) on the table, or (n_blocks, 3) with yaw; the scene's
          colours and sizes stay those of the seed.
        * `ee`: (3,) end-effector (flange) start position inside the workspace box (default `config.home`).
        * `target`: (x, y, radius) of a flat visual target disc on the table (no collision); its body id
          is `info["target_id"]` (-1 without one).
        """
        blocks, ee, target = self._parse_options(options)
        self.scene_id = self._next_scene_id(seed)
        super().reset(seed=self.scene_id)
        rng = np.random.default_rng([self.scene_id, 2])
        self._new_world()
        c = self.client
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / 240.0, physicsClientId=c)
        # sorted broadphase pairs: without this, a restored state replays with the pair order of whatever ran
        # before the restore and contacts drift by ~1e-5 m (snapshot / restore must be exact)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=c)
        self._build_scene(rng, blocks)
        self.assets.clear()
        self._load_robot(ee)
        self.target, self.target_id = target, -1
        if target is not None:
            self.target_id = self._target_disc(target)
        for _ in range(30):  # let the blocks settle
            p.stepSimulation(physicsClientId=c)
        self.steps = 0
        return self._observe(), self._info(contact=False)

    def _parse_options(self, options: dict[str, Any] | None) -> tuple[np.ndarray | None, np.ndarray, Any]:
        """Validated (blocks (n, 3) or None, ee (3,), target (3,) or None) from reset options."""
        options, cfg = dict(options or {}), self.config
        unknown = sorted(set(options) - set(self.reset_options))
        if unknown:
            raise ValueError(f"manip: unknown reset option(s) {unknown}; known: {list(self.reset_options)}")
        blocks = options.get("blocks")
        if blocks is not None:
            blocks = np.asarray(blocks, dtype=np.float64)
            if blocks.ndim != 2 or blocks.shape[0] != cfg.n_blocks or blocks.shape[1] not in (2, 3):
                raise ValueError(f"manip: options['blocks'] must be ({cfg.n_blocks}, 2 or 3), got {blocks.shape}")
            if not np.all(np.isfinite(blocks)) or np.any(np.abs(blocks[:, :2] - TABLE_CENTRE) > TABLE_INNER):
                raise ValueError(f"manip: options['blocks'] must lie on the table ({TABLE_BOUNDS}), got {blocks}")
            d = np.linalg.norm(blocks[:, None, :2] - blocks[None, :, :2], axis=-1) + np.eye(len(blocks))
            gap = 3 * cfg.block_half[1]
            if d.min() < gap:
                raise ValueError(f"manip: options['blocks'] overlap (centres closer than {gap:.3f} m)")
        ee = np.asarray(options.get("ee", cfg.home), dtype=np.float64)
        low, high = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        if ee.shape != (3,) or not np.all(np.isfinite(ee)) or np.any(ee < low) or np.any(ee > high):
            raise ValueError(f"manip: options['ee'] must be (3,) inside the workspace {low} .. {high}, got {ee}")
        target = options.get("target")
        if target is not None:
            target = np.asarray(target, dtype=np.float64)
            if target.shape != (3,) or not np.all(np.isfinite(target)) or not 0.005 <= target[2] <= 0.2:
                raise ValueError(f"manip: options['target'] must be (x, y, radius in [0.005, 0.2]), got {target}")
            if np.any(np.abs(target[:2] - TABLE_CENTRE) > TABLE_INNER):
                raise ValueError(f"manip: options['target'] must lie on the table {TABLE_BOUNDS}, got {target}")
        return blocks, ee, target

    def step(self, action: Any):
        if self.scene_id is None:
            raise RuntimeError("manip: call reset() before step()")
        a = self._check_action(action)
        cfg = self.config
        self.target_pos = np.clip(self.target_pos + a[:3], cfg.workspace_low, cfg.workspace_high)
        rpy = self.target_rpy + a[3:6]
        rpy[0] = math.pi + float(np.clip(wrap_angle(rpy[0] - math.pi), -cfg.max_tilt, cfg.max_tilt))
        rpy[1] = float(np.clip(rpy[1], -cfg.max_tilt, cfg.max_tilt))
        rpy[2] = float(wrap_angle(rpy[2]))
        self.target_rpy = rpy
        self.gripper = float(a[6])
        self._command()
        contact = False
        for _ in range(cfg.substeps):
            p.stepSimulation(physicsClientId=self.client)
            contact = contact or self._touching()
        self.steps += 1
        truncated = self.steps >= cfg.max_steps
        return self._observe(), 0.0, False, truncated, self._info(contact=contact)

    # -- public helpers ----------------------------------------------------------------------------
    def ee_pose(self) -> np.ndarray:
        """(6,) end-effector (flange) position and roll, pitch, yaw in the world frame."""
        ls = p.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return np.concatenate([ls[4], p.getEulerFromQuaternion(ls[5])])

    def block_poses(self) -> np.ndarray:
        """(n_blocks, 7) positions and xyzw quaternions of the blocks."""
        out = [np.concatenate(p.getBasePositionAndOrientation(b, physicsClientId=self.client)) for b in self.blocks]
        return np.asarray(out, dtype=np.float64).reshape(len(self.blocks), 7)

    # -- internals ---------------------------------------------------------------------------------
    def _touching(self) -> bool:
        return any(p.getContactPoints(self.robot, b, physicsClientId=self.client) for b in self.blocks)

    def _ik(self, pos: np.ndarray, rpy: np.ndarray) -> np.ndarray:
        n = self._n_movable
        low = [-v for v in _LIMITS] + [-10.0] * (n - 7)
        high = list(_LIMITS) + [10.0] * (n - 7)
        ranges = [2 * v for v in _LIMITS] + [20.0] * (n - 7)
        q = p.calculateInverseKinematics(
            self.robot,
            EE_LINK,
            list(pos),
            p.getQuaternionFromEuler(list(rpy)),
            lowerLimits=low,
            upperLimits=high,
            jointRanges=ranges,
            restPoses=list(_REST) + [0.0] * (n - 7),
            maxNumIterations=40,
            residualThreshold=1e-4,
            physicsClientId=self.client,
        )
        return np.asarray(q[:7])

    def _command(self) -> None:
        c, r = self.client, self.robot
        q = self._ik(self.target_pos, self.target_rpy)
        p.setJointMotorControlArray(
            r, list(ARM_JOINTS), p.POSITION_CONTROL, targetPositions=list(q), forces=[300.0] * 7, physicsClientId=c
        )
        opening = FINGER_OPEN * (1.0 - self.gripper)
        targets = [
            (GRIPPER_ANGLE_JOINT, 0.0, 300.0),
            (FINGER_JOINTS[0], -opening, 10.0),
            (FINGER_JOINTS[1], opening, 10.0),
            (TIP_JOINTS[0], 0.0, 2.0),
            (TIP_JOINTS[1], 0.0, 2.0),
        ]
        for j, target, force in targets:
            p.setJointMotorControl2(r, j, p.POSITION_CONTROL, targetPosition=target, force=force, physicsClientId=c)

    def _target_disc(self, target: np.ndarray) -> int:
        """A flat, collision-free disc marking the target region on the table top; returns its body id."""
        c = self.client
        vs = p.createVisualShape(
            p.GEOM_CYLINDER, radius=float(target[2]), length=0.002, rgbaColor=[0.95, 0.95, 0.95, 1], physicsClientId=c
        )
        return p.createMultiBody(0, -1, vs, [float(target[0]), float(target[1]), 0.0012], physicsClientId=c)

    def _load_robot(self, home: np.ndarray | None = None) -> None:
        c, cfg = self.client, self.config
        path = pybullet_data.getDataPath() + "/kuka_iiwa/kuka_with_gripper2.sdf"
        self.robot = p.loadSDF(path, physicsClientId=c)[0]
        p.resetBasePositionAndOrientation(self.robot, [0, 0, 0], [0, 0, 0, 1], physicsClientId=c)
        self._n_movable = sum(
            p.getJointInfo(self.robot, j, physicsClientId=c)[2] != p.JOINT_FIXED
            for j in range(p.getNumJoints(self.robot, physicsClientId=c))
        )
        for j, q in enumerate(_REST):
            p.resetJointState(self.robot, j, q, physicsClientId=c)
        p.resetJointState(self.robot, FINGER_JOINTS[0], -FINGER_OPEN, physicsClientId=c)
        p.resetJointState(self.robot, FINGER_JOINTS[1], FINGER_OPEN, physicsClientId=c)
        self.target_pos = np.array(cfg.home if home is None else home, dtype=np.float64)
        self.target_rpy = np.array([math.pi, 0.0, math.pi])
        self.gripper = 0.0
        for _ in range(8):  # converge IK by resetting the joints onto successive solutions
            q = self._ik(self.target_pos, self.target_rpy)
            for j in ARM_JOINTS:
                p.resetJointState(self.robot, j, q[j], physicsClientId=c)
        self._command()

    def _observe(self) -> dict[str, np.ndarray]:
        rgb, depth, seg = self.camera.render(self.client, self.extrinsics)
        c, r = self.client, self.robot
        q = [s[0] for s in p.getJointStates(r, list(ARM_JOINTS) + list(FINGER_JOINTS), physicsClientId=c)]
        state = np.concatenate([q, self.ee_pose()]).astype(np.float32)
        self._last_obs = {
            "rgb": rgb,
            "depth": depth,
            "segmentation": seg,
            "intrinsics": self.camera.intrinsics,
            "extrinsics": self.extrinsics.astype(np.float32),
            "state": state,
            "objects": self.block_poses().astype(np.float32),
        }
        return dict(self._last_obs)

    def _info(self, contact: bool) -> dict[str, Any]:
        return {
            **self._scene_info(),
            "contact": contact,
            "steps": self.steps,
            "robot_id": self.robot,
            "block_ids": list(self.blocks),
            "target_id": self.target_id,
        }

    # -- scene generation --------------------------------------------------------------------------
    def _box(
        self,
        he: Any,
        pos: Any,
        image: np.ndarray | None,
        rgba: Any,
        mass: float = 0.0,
        collision: bool = True,
        yaw: float = 0.0,
        tile: float = 0.25,
    ) -> int:
        c = self.client
        if image is not None:
            vs = p.createVisualShape(p.GEOM_MESH, fileName=self.assets.box_mesh(he, tile), physicsClientId=c)
        else:
            vs = p.createVisualShape(p.GEOM_BOX, halfExtents=list(he), rgbaColor=list(rgba), physicsClientId=c)
        cs = p.createCollisionShape(p.GEOM_BOX, halfExtents=list(he), physicsClientId=c) if collision else -1
        body = p.createMultiBody(mass, cs, vs, list(pos), p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=c)
        if image is not None:
            p.changeVisualShape(body, -1, textureUniqueId=self.assets.texture(c, image), physicsClientId=c)
        return body

    def _build_scene(self, rng: np.random.Generator, placed: np.ndarray | None = None) -> None:
        """Floor, pedestal, table and blocks from `rng`; `placed` (n_blocks, 2 or 3) overrides block x, y (yaw)."""
        cfg = self.config
        floor_col = distinct_colours(rng, 1, sat=(0.1, 0.3), val=(0.4, 0.6))[0]
        self._box(
            (2.5, 2.5, 0.01),
            (0, 0, -0.71),
            pattern_texture(rng, "checker", floor_col, (64, 64), (2, 2)),
            None,
            collision=False,
            tile=1.0,
        )
        self._box((0.12, 0.12, 0.35), (0, 0, -0.35), None, [0.25, 0.25, 0.28, 1], collision=False)  # pedestal
        table_col = distinct_colours(rng, 1, sat=(0.15, 0.45), val=(0.6, 0.85))[0]
        kind = ("checker", "panels", "bricks")[int(rng.integers(3))]
        # a low-contrast pattern, so the blocks stand out against the table
        img = pattern_texture(rng, kind, table_col, (64, 64), (2, 2)).astype(np.float64)
        img = (0.5 * img + 0.5 * 255 * table_col).astype(np.uint8)
        self.table = self._box((0.42, 0.6, 0.35), (0.62, 0.0, -0.35), img, None, tile=0.4)
        p.changeDynamics(self.table, -1, lateralFriction=0.5, physicsClientId=self.client)
        colours = distinct_colours(rng, cfg.n_blocks, sat=(0.75, 1.0), val=(0.75, 1.0))
        self.blocks, self.block_half, centres = [], [], []
        for k in range(cfg.n_blocks):
            half = float(rng.uniform(*cfg.block_half))
            for _ in range(500):
                xy = rng.uniform([0.55, -0.25], [0.78, 0.25])
                if all(np.linalg.norm(xy - o) > 0.12 for o in centres):
                    break
            centres.append(xy)
            yaw = float(rng.uniform(0, math.pi / 2))
            if placed is not None:
                xy = placed[k, :2]
                yaw = float(placed[k, 2]) if placed.shape[1] == 3 else yaw
            body = self._box((half,) * 3, (xy[0], xy[1], half + 0.001), None, [*colours[k], 1], mass=0.15, yaw=yaw)
            p.changeDynamics(body, -1, lateralFriction=0.5, spinningFriction=0.001, physicsClientId=self.client)
            self.blocks.append(body)
            self.block_half.append(half)
        self.static_ids = [self.table, *self.blocks]
