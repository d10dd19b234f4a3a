"""ImageNav on `nav`: reach the pose a goal image was taken from (see `ImageNavTask`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actwm.checks import require, require_at_least
from actwm.geometry import se2_compose, wrap_angle
from actwm.planning.interface import FORWARD_M, NAV_PRIMITIVES, TURN_RAD, Observation
from actwm.planning.tasks.common import SimTask, image_sha, spl, summarize
from actwm.sim.nav import NavConfig


@dataclass(frozen=True)
class ImageNavConfig:
    """ImageNav on `nav`: reach the pose the goal image was taken from.

    Attributes:
        size: observation and goal image size (pixels, square).
        budget: most agent actions per episode (stop included).
        forward_range: inclusive range of forward steps (of 0.25 m) between start and goal: 4..12 = 1-3 m.
        view_turns: the goal position lies within this many 22.5-degree turns of the start heading (in view
            of at most a few turns).
        success_distance, success_angle_deg: success region around the goal pose.
        nav: the simulator's settings (speed limits below one primitive split it into several env steps).
    """

    size: int = 64
    budget: int = 40
    forward_range: tuple[int, int] = (4, 12)
    view_turns: int = 3
    success_distance: float = 0.5
    success_angle_deg: float = 30.0
    nav: NavConfig = field(default_factory=NavConfig)

    def __post_init__(self) -> None:
        require(self.size >= 16, self, "size", ">= 16 pixels")
        require_at_least(self, 1, "budget")
        lo, hi = self.forward_range
        require(1 <= lo <= hi, self, "forward_range", "(low, high) with 1 <= low <= high")
        require(0 <= self.view_turns <= 8, self, "view_turns", "in 0..8")


def _fresh_books() -> dict[str, Any]:
    """An episode's bookkeeping: actions issued, moves, path (m), collisions, stopped, executed primitive indices."""
    return {"issued": 0, "moves": 0, "path": 0.0, "collisions": 0, "stopped": False, "executed": []}


@dataclass(frozen=True, eq=False)
class ImageNavEpisode:
    """One ImageNav episode. Poses are (x, y, yaw) in the scene's world frame (metres, radians).

    `shortest_path_m` is the straight-line start-goal distance: episodes are drawn so that this segment
    is free for the robot disc (`NavEnv.free_segment`, the simulator's own collision test), so it is the
    geodesic exactly (no grid). `shortest_actions` counts the moves of `oracle_plan(start, goal)`
    (turns to face the goal, forwards, turns to the goal heading): no discrete plan reaches the goal pose
    with fewer, since covering `shortest_path_m` needs that many 0.25 m forwards along one heading.
    """

    index: int
    scene_seed: int
    start: tuple[float, float, float]
    goal: tuple[float, float, float]
    goal_image: np.ndarray  # (size, size, 3) uint8, rendered from `goal`
    shortest_path_m: float
    shortest_actions: int

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "scene_seed": self.scene_seed,
            "start": [float(v).hex() for v in self.start],
            "goal": [float(v).hex() for v in self.goal],
            "goal_image_sha256": image_sha(self.goal_image),
            "shortest_path_m": self.shortest_path_m,
            "shortest_actions": self.shortest_actions,
        }


def integrate_plan(start: Sequence[float], plan: Sequence[int | str]) -> np.ndarray:
    """Poses `(len(plan) + 1, 3)` reached by discrete primitives from `start` (se2_compose, no collisions)."""
    names = list(NAV_PRIMITIVES)
    poses = [np.asarray(start, dtype=np.float64)]
    for a in plan:
        name = a if isinstance(a, str) else names[int(a)]
        poses.append(se2_compose(poses[-1], np.asarray(NAV_PRIMITIVES[name], dtype=np.float64)))
    return np.stack(poses)


def oracle_plan(start: Sequence[float], goal: Sequence[float]) -> list[str]:
    """Primitive names from `start` to `goal`: turn to face the goal, go forward, turn to the goal heading.

    Exact when the goal lies on the primitive lattice of `start` (as every episode's goal does).
    """
    s, g = np.asarray(start, dtype=np.float64), np.asarray(goal, dtype=np.float64)
    dist = float(np.hypot(*(g[:2] - s[:2])))
    forwards = int(round(dist / FORWARD_M))
    bearing = math.atan2(g[1] - s[1], g[0] - s[0]) if forwards else float(s[2])
    a = int(round(float(wrap_angle(bearing - s[2])) / TURN_RAD))
    b = int(round(float(wrap_angle(g[2] - (s[2] + a * TURN_RAD))) / TURN_RAD))
    return _turns(a) + ["forward"] * forwards + _turns(b)


def _split(value: float, limit: float) -> list[float]:
    """`value` as the fewest equal parts within `limit` (an agent action over several env steps)."""
    k = max(1, math.ceil(abs(value) / limit - 1e-9))
    return [value / k] * k


class ImageNavTask(SimTask):
    """ImageNav on `nav` (World-In-World's IGNav, our sizes): reach the pose the goal image was taken from.

    Agent actions (vocabulary "nav_discrete", indices into `NAV_PRIMITIVES`): forward 0.25 m, left / right
    22.5 degrees, stop. Each is executed as the fewest equal env steps within the simulator's speed limits
    (`NavConfig.max_translation`, `max_rotation`; one step with the defaults), in float64, so the robot ends
    exactly (to rounding) at `se2_compose(pose, primitive)` unless a step is refused by a collision (the
    robot then stays where the simulator stopped it, and the remaining sub-steps are still attempted).
    `stop` moves nothing and ends the episode: later actions are counted in `Observation.step` (so budgets
    still bound the loop) but do nothing. `obs.extras["stopped"]` tells the planner.

    Episodes (`episodes(seed, n)`): per scene, the start is the simulator's own free start pose; the goal is
    `start` composed with `a` turns (|a| <= view_turns: the goal is in view after at most that many turns),
    `n` forwards (1-3 m) and a final turn to any of the 16 headings, kept only if the straight segment is
    free and 0.6 m ahead of the goal is free (no wall close-up as goal image). Success: within
    `success_distance` m and `success_angle_deg` of the goal pose when the agent stops or the budget ends.
    Metrics: SR, SPL in metres (shortest path = the free straight segment = geodesic, see
    `ImageNavEpisode`), SPL counted in actions (World-In-World's way: moves, stop excluded), path length.
    """

    name = "imagenav"

    sim = "nav"
    vocabulary_name = "nav_discrete"
    sim_config_field = "nav"

    def __init__(self, config: ImageNavConfig | None = None) -> None:
        super().__init__(config or ImageNavConfig())
        self._books = _fresh_books()

    # -- episode sets --------------------------------------------------------------------------------
    def _draw_episode(self, index: int, scene: int) -> ImageNavEpisode | None:
        cfg = self.config
        self.env.reset(seed=scene)
        u = self.env.unwrapped
        start = u.pose.copy()
        rng = np.random.default_rng([scene, 31337])
        for _ in range(200):
            a = int(rng.integers(-cfg.view_turns, cfg.view_turns + 1))
            n = int(rng.integers(cfg.forward_range[0], cfg.forward_range[1] + 1))
            b = int(rng.integers(-7, 9))
            plan = _turns(a) + ["forward"] * n + _turns(b)
            goal = integrate_plan(start, plan)[-1]
            ahead = goal[:2] + 0.6 * np.array([math.cos(goal[2]), math.sin(goal[2])])
            if not (u.free_segment(start[:2], goal[:2]) and u.free_segment(goal[:2], ahead)):
                continue
            best = oracle_plan(start, goal)
            return ImageNavEpisode(
                index=index,
                scene_seed=int(scene),
                start=tuple(float(v) for v in start),
                goal=tuple(float(v) for v in goal),
                goal_image=u.render_pose(goal)["rgb"],
                shortest_path_m=float(np.hypot(*(goal[:2] - start[:2]))),
                shortest_actions=sum(x != "stop" for x in best),
            )
        return None

    # -- the Task protocol ---------------------------------------------------------------------------
    def reset(self, episode: ImageNavEpisode) -> Observation:
        """Put the robot at the episode's start in its scene; the first observation carries the goal image."""
        if not isinstance(episode, ImageNavEpisode):
            raise ValueError(f"imagenav: reset() needs an ImageNavEpisode, got {type(episode).__name__}")
        self._check_goal_image(episode.goal_image)
        self.env.reset(seed=episode.scene_seed, options={"pose": episode.start})
        self.episode = episode
        self._books = _fresh_books()
        return self.observe()

    def observe(self) -> Observation:
        """The agent's current view and the goal image (`pose` is the true pose: oracle use only).

        `extras["actions"]`: the primitive indices the agent has executed so far (its own commands: odometry,
        not privileged; a forward refused by a collision is still listed)."""
        ep = self._require_episode()
        u = self.env.unwrapped
        return Observation(
            rgb=u.render(),
            goal=ep.goal_image,
            step=self._books["issued"],
            pose=u.pose.copy(),
            extras={"stopped": self._books["stopped"], "actions": tuple(self._books["executed"])},
        )

    def env_actions(self, action: Any) -> list[np.ndarray]:
        """The nav3 env steps (float64 (3,)) of ONE primitive within the simulator's speed limits."""
        name = self.vocabulary.primitives[self._index(action)]
        dx, _, dyaw = NAV_PRIMITIVES[name]
        cfg = self.env.unwrapped.config
        if name == "forward":
            return [np.array([d, 0.0, 0.0]) for d in _split(dx, cfg.max_translation)]
        if name in ("left", "right"):
            return [np.array([0.0, 0.0, r]) for r in _split(dyaw, cfg.max_rotation)]
        return [np.zeros(3)]

    def step(self, action: Any) -> Observation:
        """Execute ONE agent action (primitive index); see the class docstring for stop."""
        self._require_episode()
        index = self._index(action)
        books = self._books
        books["issued"] += 1
        if books["stopped"]:
            return self.observe()
        books["executed"].append(index)
        if self.vocabulary.primitives[index] == "stop":
            books["stopped"] = True
            return self.observe()
        u = self.env.unwrapped
        before = u.pose.copy()
        for a in self.env_actions(index):
            books["collisions"] += bool(self.env.step(a)[4]["collided"])
        books["moves"] += 1
        books["path"] += float(np.hypot(*(u.pose[:2] - before[:2])))
        return self.observe()

    def result(self, stopped: bool) -> dict[str, Any]:
        """Per-episode metrics, scored from the true pose now (the agent stopped or the budget ended)."""
        ep = self._require_episode()
        cfg, books = self.config, self._books
        pose, goal = self.env.unwrapped.pose, np.asarray(ep.goal)
        dist = float(np.hypot(*(pose[:2] - goal[:2])))
        angle = abs(math.degrees(float(wrap_angle(pose[2] - goal[2]))))
        success = dist <= cfg.success_distance and angle <= cfg.success_angle_deg
        return {
            "episode": ep.index,
            "scene_seed": ep.scene_seed,
            "success": bool(success),
            "stopped": bool(stopped or books["stopped"]),
            "distance_to_goal": dist,
            "angle_to_goal_deg": angle,
            "path_length": books["path"],
            "actions": books["moves"],
            "collisions": books["collisions"],
            "shortest_path_m": ep.shortest_path_m,
            "shortest_actions": ep.shortest_actions,
            "spl": spl(success, ep.shortest_path_m, books["path"]),
            "spl_actions": spl(success, ep.shortest_actions, books["moves"]),
        }

    @staticmethod
    def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """SR (Wilson 95%), mean SPL (m), SPL in actions, path length and actions (bootstrap 95%)."""
        return summarize(results, ("spl", "spl_actions", "path_length", "actions"))

    # -- internals -----------------------------------------------------------------------------------
    def _index(self, action: Any) -> int:
        arr = np.asarray(action)
        if arr.ndim != 0:
            raise ValueError(f"imagenav: an agent action is one primitive index, got shape {arr.shape}")
        return int(self.vocabulary.validate(arr.reshape(1, 1), what="imagenav action")[0, 0])


def _turns(k: int) -> list[str]:
    return ["left"] * k if k > 0 else ["right"] * (-k)
