"""Closed-loop tasks on the built-in simulators: ImageNav on `nav`, push-to-target on `manip`.

Both implement `actwm.planning.interface.Task` (stateful: the task owns its simulator `env`):

    task = ImageNavTask(ImageNavConfig(size=64))
    episodes = task.episodes(seed=0, n=50)        # EpisodeSet: fixed, seeded, `episodes.id` = hash of the spec
    for ep in episodes:
        obs = task.reset(ep)                      # Observation(rgb, goal, step=0)
        while obs.step < task.budget and not obs.extras["stopped"]:
            obs = task.step(action)               # ONE agent action (primitive index or (D,) vector)
        results.append(task.result(stopped=...))  # per-episode dict
    task.summary(results)                         # SR, SPL (m and actions) with 95% intervals

Scenes are disjoint from every training and held-out scene: the demo and `actwm data simulate` use scene
seeds `[0, 1_000_000)` for training and `1_000_000 + seed + i` for held-out test scenes
(`actwm.data.convert.TEST_SEED_OFFSET`); task scenes are drawn from `[TASK_SCENE_BASE, 2**31 - 1)` with
`TASK_SCENE_BASE = 2_000_000_000` (checked by `check_disjoint`).

`env_actions(action)` gives the simulator steps of one agent action (the oracle world model replays them
between `env.unwrapped.snapshot()` and `restore()`); `step` executes them and keeps the episode's books.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from actwm.geometry import se2_compose, wrap_angle
from actwm.planning.interface import FORWARD_M, NAV_PRIMITIVES, TURN_RAD, Observation, get_vocabulary
from actwm.sim import make
from actwm.sim.manip import ManipConfig
from actwm.sim.nav import NavConfig

TASK_SCENE_BASE = 2_000_000_000  # task scenes: [TASK_SCENE_BASE, 2**31 - 1)
TRAINING_SCENES_END = 2_000_000  # training [0, 1e6) and held-out test scenes (1e6 + seed + i) lie below this
_Z95 = 1.959963984540054


# ------------------------------------------------------------------------------------------------ episode sets


@dataclass(frozen=True)
class EpisodeSet:
    """A fixed, seeded list of episodes. `id` is the sha256 (16 hex) of the full spec (`spec()`)."""

    task: str
    seed: int
    config: dict[str, Any]
    episodes: tuple[Any, ...]
    id: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:16]
        object.__setattr__(self, "id", digest)

    def spec(self) -> dict[str, Any]:
        """JSON-able description of everything that defines the set (goal images by sha256)."""
        return {
            "task": self.task,
            "seed": self.seed,
            "config": self.config,
            "episodes": [e.describe() for e in self.episodes],
        }

    def __iter__(self) -> Iterator[Any]:
        return iter(self.episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Any:
        return self.episodes[i]


def scene_stream(task: str, seed: int) -> Iterator[int]:
    """Endless distinct scene seeds of episode set `seed` for `task`, all in `[TASK_SCENE_BASE, 2**31 - 1)`."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"episode-set seed must be a non-negative int, got {seed!r}")
    salt = int.from_bytes(hashlib.sha256(task.encode()).digest()[:4], "little")
    rng = np.random.default_rng([int(seed), salt])
    seen: set[int] = set()
    while True:
        s = int(rng.integers(TASK_SCENE_BASE, 2**31 - 1))
        if s not in seen:
            seen.add(s)
            yield s


def _check_count(n: Any) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of episodes must be an int >= 1, got {n!r}")
    return int(n)


def check_disjoint(seeds: Sequence[int]) -> None:
    """Raise ValueError if any scene seed could be a training or held-out scene of the demo / data pipeline."""
    bad = [int(s) for s in seeds if s < TASK_SCENE_BASE]
    if bad:
        raise ValueError(f"task scene seeds {bad[:5]} overlap the training / held-out range [0, {TASK_SCENE_BASE})")


def _image_sha(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ statistics


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean (seeded: the same values give the same interval)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def summarize(results: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """SR with a Wilson interval and the mean (bootstrap interval) of each of `keys` over per-episode results."""
    n = len(results)
    wins = sum(bool(r["success"]) for r in results)
    out: dict[str, Any] = {"n": n, "success_rate": wins / n if n else float("nan")}
    out["success_rate_ci95"] = list(wilson_interval(wins, n))
    for k in keys:
        vals = [float(r[k]) for r in results]
        out[k] = float(np.mean(vals)) if n else float("nan")
        out[f"{k}_ci95"] = list(bootstrap_interval(vals))
    return out


def spl(success: bool, shortest: float, taken: float) -> float:
    """Success weighted by path length: `S * l / max(p, l)` (Anderson et al. 2018)."""
    if not success:
        return 0.0
    return float(shortest / max(taken, shortest)) if shortest > 0 else 1.0


# ------------------------------------------------------------------------------------------------ ImageNav


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
        if self.size < 16:
            raise ValueError(f"ImageNavConfig.size must be >= 16 pixels, got {self.size}")
        if self.budget < 1:
            raise ValueError(f"ImageNavConfig.budget must be >= 1, got {self.budget}")
        lo, hi = self.forward_range
        if not 1 <= lo <= hi:
            raise ValueError(f"ImageNavConfig.forward_range must satisfy 1 <= low <= high, got {self.forward_range}")
        if not 0 <= self.view_turns <= 8:
            raise ValueError(f"ImageNavConfig.view_turns must be in 0..8, got {self.view_turns}")


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
            "goal_image_sha256": _image_sha(self.goal_image),
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


class ImageNavTask:
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

    def __init__(self, config: ImageNavConfig | None = None) -> None:
        self.config = config or ImageNavConfig()
        self.vocabulary = get_vocabulary("nav_discrete")
        self.budget = self.config.budget
        self.image_size = (self.config.size, self.config.size)
        self.env = make("nav", size=self.config.size, config=self.config.nav)
        self.episode: ImageNavEpisode | None = None
        self._books = {"issued": 0, "moves": 0, "path": 0.0, "collisions": 0, "stopped": False}

    # -- episode sets --------------------------------------------------------------------------------
    def episodes(self, seed: int, n: int) -> EpisodeSet:
        """The fixed episode set `seed` with `n` episodes (same seed -> same set and id)."""
        n = _check_count(n)
        out: list[ImageNavEpisode] = []
        for scene in scene_stream(self.name, seed):
            ep = self._draw_episode(len(out), scene)
            if ep is not None:
                out.append(ep)
            if len(out) == n:
                break
        check_disjoint([e.scene_seed for e in out])
        return EpisodeSet(self.name, int(seed), _config_dict(self.config), tuple(out))

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
        if episode.goal_image.shape != (*self.image_size, 3):
            raise ValueError(
                f"imagenav: the episode's goal image is {episode.goal_image.shape[:2]}, the task observes "
                f"{self.image_size}"
            )
        self.env.reset(seed=episode.scene_seed, options={"pose": episode.start})
        self.episode = episode
        self._books = {"issued": 0, "moves": 0, "path": 0.0, "collisions": 0, "stopped": False}
        return self.observe()

    def observe(self) -> Observation:
        """The agent's current view and the goal image (`pose` is the true pose: oracle use only)."""
        ep = self._require_episode()
        u = self.env.unwrapped
        return Observation(
            rgb=u.render(),
            goal=ep.goal_image,
            step=self._books["issued"],
            pose=u.pose.copy(),
            extras={"stopped": self._books["stopped"]},
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

    def close(self) -> None:
        self.env.close()

    # -- internals -----------------------------------------------------------------------------------
    def _index(self, action: Any) -> int:
        arr = np.asarray(action)
        if arr.ndim != 0:
            raise ValueError(f"imagenav: an agent action is one primitive index, got shape {arr.shape}")
        return int(self.vocabulary.validate(arr.reshape(1, 1), what="imagenav action")[0, 0])

    def _require_episode(self) -> ImageNavEpisode:
        if self.episode is None:
            raise RuntimeError("imagenav: call reset(episode) first")
        return self.episode


def _turns(k: int) -> list[str]:
    return ["left"] * k if k > 0 else ["right"] * (-k)


def _config_dict(config: Any) -> dict[str, Any]:
    """JSON-able dataclass config (tuples become lists)."""
    return json.loads(json.dumps(asdict(config)))


# ------------------------------------------------------------------------------------------------ push-to-target


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
        if self.size < 16 or self.budget < 1:
            raise ValueError(f"PushConfig: size must be >= 16 and budget >= 1, got {self.size}, {self.budget}")
        if not 0.005 <= self.tolerance <= 0.1:
            raise ValueError(f"PushConfig.tolerance must be in [0.005, 0.1] m, got {self.tolerance}")
        if not 0.02 <= self.push_range[0] <= self.push_range[1] <= 0.25:
            raise ValueError(f"PushConfig.push_range must satisfy 0.02 <= low <= high <= 0.25, got {self.push_range}")


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
            "goal_image_sha256": _image_sha(self.goal_image),
        }


class PushTask:
    """Push-to-target on `manip` (vocabulary "ee7": one agent action = one env step).

    Success is scored from the simulator's state (block 0's centre within `tolerance` of the target when the
    agent stops or the budget ends); a planner that imagines must read block positions from frames. The
    target is drawn as a flat disc (no collision) so it is visible in every frame. Metrics: SR, steps.
    """

    name = "push"

    def __init__(self, config: PushConfig | None = None) -> None:
        self.config = config or PushConfig()
        self.vocabulary = get_vocabulary("ee7")
        self.budget = self.config.budget
        self.image_size = (self.config.size, self.config.size)
        self.env = make("manip", size=self.config.size, config=self.config.manip)
        self.episode: PushEpisode | None = None
        self._books = {"issued": 0, "stopped": False}

    def episodes(self, seed: int, n: int) -> EpisodeSet:
        """The fixed episode set `seed` with `n` episodes (same seed -> same set and id)."""
        n = _check_count(n)
        out: list[PushEpisode] = []
        for scene in scene_stream(self.name, seed):
            ep = self._draw_episode(len(out), scene)
            if ep is not None:
                out.append(ep)
            if len(out) == n:
                break
        check_disjoint([e.scene_seed for e in out])
        return EpisodeSet(self.name, int(seed), _config_dict(self.config), tuple(out))

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
        if episode.goal_image.shape != (*self.image_size, 3):
            raise ValueError(f"push: the episode's goal image is {episode.goal_image.shape[:2]}, not {self.image_size}")
        target = (*episode.target, self.config.tolerance)
        self.env.reset(seed=episode.scene_seed, options={"blocks": episode.blocks, "target": target})
        self.episode = episode
        self._books = {"issued": 0, "stopped": False}
        return self.observe()

    def observe(self) -> Observation:
        """The camera frame and the goal image (`pose` = block 0's (x, y, yaw): oracle use only)."""
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
            extras={"stopped": self._books["stopped"], "target": ep.target},
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

    def close(self) -> None:
        self.env.close()

    def _require_episode(self) -> PushEpisode:
        if self.episode is None:
            raise RuntimeError("push: call reset(episode) first")
        return self.episode


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
