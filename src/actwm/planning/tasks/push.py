"""Push-to-target on `manip`: push a block onto a target disc (see `PushTask`; `PushOracle` is privileged)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actwm.checks import require, require_at_least
from actwm.planning.interface import Observation
from actwm.planning.tasks.common import SimTask, image_sha, summarize
from actwm.sim.manip import ManipConfig


@dataclass(frozen=True)
class PushConfig:
    """Push-to-target on `manip`: push block 0 until its centre lies within `tolerance` of the target.

    Attributes:
        size: observation and goal image size (pixels, square).
        budget: most agent actions (= env steps at 10 Hz) per episode.
        tolerance: success radius (m) around the target centre; also the radius of the drawn target disc.
        push_range: range of start-to-target distances (m).
        manip: the simulator's settings (`n_blocks` > 1 adds distractor blocks away from the push).
    """

    size: int = 64
    budget: int = 100
    tolerance: float = 0.03
    push_range: tuple[float, float] = (0.08, 0.15)
    manip: ManipConfig = field(default_factory=lambda: ManipConfig(n_blocks=1))

    def __post_init__(self) -> None:
        require(self.size >= 16, self, "size", ">= 16 pixels")
        require_at_least(self, 1, "budget")
        require(0.005 <= self.tolerance <= 0.1, self, "tolerance", "in [0.005, 0.1] m")
        lo, hi = self.push_range
        require(0.02 <= lo <= hi <= 0.25, self, "push_range", "(low, high) m with 0.02 <= low <= high <= 0.25")


@dataclass(frozen=True, eq=False)
class PushEpisode:
    """One push-to-target episode: block placements `blocks` (n_blocks, 3) = (x, y, yaw), block 0 is pushed to
    `target` (x, y); `goal_image` shows the scene (target disc drawn) with block 0 on the target, arm at home."""

    index: int
    scene_seed: int
    blocks: tuple[tuple[float, float, float], ...]
    target: tuple[float, float]
    goal_image: np.ndarray

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "scene_seed": self.scene_seed,
            "blocks": [[float(v).hex() for v in b] for b in self.blocks],
            "target": [float(v).hex() for v in self.target],
            "goal_image_sha256": image_sha(self.goal_image),
        }


class PushTask(SimTask):
    """Push-to-target on `manip` (vocabulary "ee7": one agent action = one env step).

    Success is scored from the simulator's state (block 0's centre within `tolerance` of the target when the
    agent stops or the budget ends); a planner that imagines must read block positions from frames. The
    target is drawn as a flat disc (no collision) so it is visible in every frame. Metrics: SR, steps.
    """

    name = "push"

    sim = "manip"
    vocabulary_name = "ee7"
    sim_config_field = "manip"

    def __init__(self, config: PushConfig | None = None) -> None:
        super().__init__(config or PushConfig())
        self._books = {"issued": 0, "stopped": False}

    def _draw_episode(self, index: int, scene: int) -> PushEpisode | None:
        cfg = self.config
        rng = np.random.default_rng([scene, 4242])
        low, high = np.asarray(cfg.manip.workspace_low[:2]), np.asarray(cfg.manip.workspace_high[:2])
        for _ in range(200):
            start = rng.uniform([0.6, -0.18], [0.75, 0.18])
            theta = rng.uniform(-math.pi, math.pi)
            u = np.array([math.cos(theta), math.sin(theta)])
            target = start + rng.uniform(*cfg.push_range) * u
            behind = start - 0.1 * u  # where the gripper starts its push: must be reachable
            if not (np.all(behind > low + 0.02) and np.all(behind < high - 0.02)):
                continue
            if not (0.55 <= target[0] <= 0.8 and abs(target[1]) <= 0.25):
                continue
            blocks = [(float(start[0]), float(start[1]), float(rng.uniform(0, math.pi / 2)))]
            blocks += self._distractors(rng, start, target)
            if len(blocks) < cfg.manip.n_blocks:
                continue
            at_goal = [(float(target[0]), float(target[1]), blocks[0][2]), *blocks[1:]]
            disc = (float(target[0]), float(target[1]), cfg.tolerance)
            goal = self.env.reset(seed=scene, options={"blocks": at_goal, "target": disc})[0]["rgb"]
            return PushEpisode(index, int(scene), tuple(blocks), (float(target[0]), float(target[1])), goal)
        return None

    def _distractors(self, rng: np.random.Generator, start: np.ndarray, target: np.ndarray) -> list[tuple]:
        """Blocks 1.. placed at least 0.12 m from the push segment and from each other."""
        out: list[tuple[float, float, float]] = []
        for _ in range(200):
            if len(out) == self.config.manip.n_blocks - 1:
                break
            xy = rng.uniform([0.5, -0.3], [0.85, 0.3])
            seg = target - start
            t = float(np.clip((xy - start) @ seg / (seg @ seg), 0.0, 1.0))
            if np.linalg.norm(xy - (start + t * seg)) < 0.15 or any(np.hypot(*(xy - o[:2])) < 0.12 for o in out):
                continue
            out.append((float(xy[0]), float(xy[1]), float(rng.uniform(0, math.pi / 2))))
        return out

    def reset(self, episode: PushEpisode) -> Observation:
        """Build the episode's scene with the target disc; the arm starts at home with the gripper open."""
        if not isinstance(episode, PushEpisode):
            raise ValueError(f"push: reset() needs a PushEpisode, got {type(episode).__name__}")
        self._check_goal_image(episode.goal_image)
        target = (*episode.target, self.config.tolerance)
        self.env.reset(seed=episode.scene_seed, options={"blocks": episode.blocks, "target": target})
        self.episode = episode
        self._books = {"issued": 0, "stopped": False}
        return self.observe()

    def observe(self) -> Observation:
        """The camera frame and the goal image (`pose` = block 0's (x, y, yaw): oracle use only).

        `extras` holds what a real robot knows without privileged state: "ee", its own end-effector
        (flange) pose (6,) from proprioception, and the camera calibration "intrinsics" (3, 3) and
        "extrinsics" (4, 4) world-to-camera. ("target" is the true target, for results and oracles only.)
        """
        ep = self._require_episode()
        u = self.env.unwrapped
        block = u.block_poses()[0]
        yaw = float(
            np.arctan2(2 * (block[6] * block[5] + block[3] * block[4]), 1 - 2 * (block[4] ** 2 + block[5] ** 2))
        )
        return Observation(
            rgb=u.render(),
            goal=ep.goal_image,
            step=self._books["issued"],
            pose=np.array([block[0], block[1], yaw]),
            extras={
                "stopped": self._books["stopped"],
                "target": ep.target,
                "ee": u.ee_pose(),
                "intrinsics": u.camera.intrinsics,
                "extrinsics": u.extrinsics,
            },
        )

    def env_actions(self, action: Any) -> list[np.ndarray]:
        """The one ee7 env step (float32 (7,)) of an agent action."""
        arr = self.vocabulary.validate(np.asarray(action, dtype=np.float64).reshape(1, 1, -1), what="push action")
        return [arr[0, 0].astype(np.float32)]

    def step(self, action: Any) -> Observation:
        """Execute ONE ee7 action; after `stop()` actions are counted but do nothing."""
        self._require_episode()
        env_actions = self.env_actions(action)
        self._books["issued"] += 1
        if not self._books["stopped"]:
            for a in env_actions:
                self.env.step(a)
        return self.observe()

    def stop(self) -> Observation:
        """The agent declares the push done (ee7 has no stop primitive)."""
        self._books["stopped"] = True
        return self.observe()

    def block_distance(self) -> float:
        """Distance (m) of block 0's centre to the target centre, from the simulator's state."""
        ep = self._require_episode()
        return float(np.hypot(*(self.env.unwrapped.block_poses()[0, :2] - np.asarray(ep.target))))

    def result(self, stopped: bool) -> dict[str, Any]:
        ep = self._require_episode()
        dist = self.block_distance()
        return {
            "episode": ep.index,
            "scene_seed": ep.scene_seed,
            "success": bool(dist <= self.config.tolerance),
            "stopped": bool(stopped or self._books["stopped"]),
            "distance_to_target": dist,
            "initial_distance": float(np.hypot(*(np.asarray(ep.blocks[0][:2]) - np.asarray(ep.target)))),
            "steps": self._books["issued"],
        }

    @staticmethod
    def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """SR (Wilson 95%) and mean steps and final distance (bootstrap 95%)."""
        return summarize(results, ("steps", "distance_to_target"))


class PushOracle:
    """ORACLE (privileged state; tests and upper bounds only): a closed-loop pusher for `PushTask`.

    Lift, travel above a point behind block 0 on the block-to-target line (fixed when the lift ends),
    descend vertically with the gripper closed, push along the line (correcting sideways drift, slowing
    near the target), and re-approach when the block slips off the line.
    """

    def __init__(self, task: PushTask, speed: float = 0.02) -> None:
        self.task, self.speed = task, speed
        self.phase = "lift"
        self.approach = np.zeros(2)

    def __call__(self) -> np.ndarray:
        """The next ee7 action (float64 (7,))."""
        u = self.task.env.unwrapped
        cfg = u.config
        ee, block = u.ee_pose()[:3], u.block_poses()[0, :2]
        d = np.asarray(self.task._require_episode().target) - block
        remaining = float(np.linalg.norm(d))
        line = d / max(remaining, 1e-9)
        normal = np.array([-line[1], line[0]])
        travel_z, push_z = cfg.workspace_low[2] + 0.09, cfg.workspace_low[2] + 0.004
        rel = ee[:2] - block
        speed = self.speed
        if self.phase == "push" and (abs(float(rel @ normal)) > 0.02 or float(rel @ line) > -0.01):
            self.phase = "lift"  # slipped sideways or past the block
        if self.phase == "push":
            xy, z = ee[:2] + 0.05 * line - float(rel @ normal) * normal, push_z
            speed = min(speed, 0.6 * remaining + 0.002)
        else:
            xy, z = {"lift": ee[:2], "travel": self.approach, "descend": self.approach}[self.phase], push_z
            z = push_z if self.phase == "descend" else travel_z
            if np.linalg.norm(np.r_[xy - ee[:2], z - ee[2]]) < 0.01:
                if self.phase == "lift":
                    self.approach = block - (u.block_half[0] + 0.045) * line
                self.phase = {"lift": "travel", "travel": "descend", "descend": "push"}[self.phase]
        err = np.r_[xy - ee[:2], z - ee[2]]
        norm = float(np.linalg.norm(err))
        step = err if norm <= speed else err * speed / norm
        return np.r_[np.clip(step, -cfg.max_delta, cfg.max_delta), 0.0, 0.0, 0.0, 1.0]
