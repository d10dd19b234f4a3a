"""Scripted exploration policies and episode recording for the built-in worlds.

`scripted_policy(name, rng)` returns a stateful callable `(obs) -> action`:

* nav: forward motion and turning with smoothly varying commands (Ornstein-Uhlenbeck processes on dx,
  dy and dyaw), occasional spontaneous turns, and turning away from obstacles seen in the depth image
  and after a refused (collided) step.
* manip: repeated pushes: pick a block, travel above a point behind it, close the gripper, descend,
  push through the block along a random direction, lift; velocity-limited, low-pass filtered, with noise.

`record_episode` runs a policy and stores the REALISED motion as actions (nav: true displacement in the
robot frame of frame t and wrapped yaw change, so a refused step records zeros; manip: true change of the
end-effector position and roll/pitch/yaw plus the commanded gripper value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from actwm.episode import Episode
from actwm.geometry import se2_relative, wrap_angle
from actwm.sim.common import SimEnv
from actwm.sim.manip import ManipConfig
from actwm.sim.registry import make

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]


class _OU:
    """Ornstein-Uhlenbeck process `x += theta * (mu - x) + sigma * N(0, 1)`, clipped to [lo, hi]."""

    def __init__(self, rng: np.random.Generator, mu: float, theta: float, sigma: float, lo: float, hi: float):
        self.rng, self.mu, self.theta, self.sigma, self.lo, self.hi = rng, mu, theta, sigma, lo, hi
        self.x = float(np.clip(mu + sigma * rng.normal(), lo, hi))

    def __call__(self) -> float:
        self.x = float(
            np.clip(self.x + self.theta * (self.mu - self.x) + self.sigma * self.rng.normal(), self.lo, self.hi)
        )
        return self.x


def obstacle_distances(obs: dict[str, np.ndarray], min_height: float = 0.05) -> tuple[float, float, float]:
    """Horizontal distance (m) to the nearest non-floor point in the left, centre and right thirds of the view.

    Uses depth, intrinsics and extrinsics only (no privileged scene knowledge); `inf` where nothing is seen.
    """
    step = max(1, obs["depth"].shape[1] // 48)  # subsample large images: this runs every step
    depth = obs["depth"][::step, ::step].astype(np.float64)
    seg = obs["segmentation"][::step, ::step]
    k, e = obs["intrinsics"].astype(np.float64), obs["extrinsics"].astype(np.float64)
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64) * step, np.arange(h, dtype=np.float64) * step)
    cam = np.stack([(u - k[0, 2]) / k[0, 0] * depth, (v - k[1, 2]) / k[1, 1] * depth, depth], axis=-1)
    rot, t = e[:3, :3], e[:3, 3]
    world = (cam - t) @ rot  # rot^T (p - t)
    eye = -rot.T @ t
    horiz = np.hypot(world[..., 0] - eye[0], world[..., 1] - eye[1])
    solid = (world[..., 2] > min_height) & (seg >= 0)
    dist = np.where(solid, horiz, np.inf)
    thirds = np.array_split(np.arange(w), 3)
    return tuple(float(dist[:, cols].min()) for cols in thirds)  # type: ignore[return-value]


class NavExplorer:
    """Smooth random exploration for `nav` (see module docstring). Actions are (3,) float32 (dx, dy, dyaw)."""

    def __init__(self, rng: np.random.Generator, speed: float = 0.17, turn_rate: float = 0.3):
        self.rng = rng
        self.dx = _OU(rng, speed, 0.25, 0.05, 0.0, 0.25)
        self.dy = _OU(rng, 0.0, 0.3, 0.015, -0.05, 0.05)
        self.dyaw = _OU(rng, 0.0, 0.2, 0.08, -turn_rate, turn_rate)
        self.turn_rate = turn_rate
        self.turn_steps = 0
        self.turn_dir = 1.0
        self.spin_in_place = False  # after a refused step: rotate only (a refused step does not rotate either)
        self.last_pose: np.ndarray | None = None
        self.last_action = np.zeros(3)

    def _start_turn(self, direction: float, steps: int, in_place: bool = False) -> None:
        self.turn_dir, self.turn_steps, self.spin_in_place = direction, steps, in_place

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        pose = np.asarray(obs["pose"], dtype=np.float64)
        left, centre, right = obstacle_distances(obs)
        blocked = (
            self.last_pose is not None
            and np.hypot(*self.last_action[:2]) > 1e-3
            and np.allclose(pose, self.last_pose, atol=1e-6)
        )
        if blocked:
            self._start_turn(1.0 if left > right else -1.0, int(self.rng.integers(4, 9)), in_place=True)
        elif self.turn_steps == 0 and min(centre, 0.7 * min(left, right) + 0.3 * centre) < 0.9:
            self._start_turn(1.0 if left > right else -1.0, int(self.rng.integers(2, 5)))
        elif self.turn_steps == 0 and self.rng.uniform() < 0.04:
            self._start_turn(float(self.rng.choice([-1.0, 1.0])), int(self.rng.integers(2, 6)))
        dx, dy, dyaw = self.dx(), self.dy(), self.dyaw()
        if self.turn_steps > 0:
            self.turn_steps -= 1
            dyaw = self.turn_dir * self.rng.uniform(0.6, 1.0) * self.turn_rate
            dx = 0.0 if self.spin_in_place else (min(dx, 0.03) if centre < 0.9 else dx * 0.5)
            dy = 0.0
            self.dyaw.x = dyaw * 0.5  # leave the turn smoothly
        action = np.array([dx, dy, dyaw], dtype=np.float32)
        self.last_pose, self.last_action = pose, action.astype(np.float64)
        return action


class ManipPusher:
    """Scripted pushing for `manip` (see module docstring). Actions are (7,) float32 ee7 commands."""

    def __init__(self, rng: np.random.Generator, config: ManipConfig | None = None, max_speed: float = 0.04):
        self.rng = rng
        self.cfg = config or ManipConfig()
        self.max_speed = max_speed
        self.waypoints: list[tuple[np.ndarray, float]] = []
        self.phase_steps = 0
        self.prev = np.zeros(7)
        self.yaw = _OU(rng, 0.0, 0.3, 0.03, -0.08, 0.08)

    def _plan(self, ee: np.ndarray, blocks: np.ndarray) -> None:
        cfg = self.cfg
        low, high = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        dist = np.linalg.norm(blocks[:, :2] - ee[:2], axis=1)
        order = np.argsort(dist + self.rng.uniform(0, 0.15, len(dist)))
        centre = (low[:2] + high[:2]) / 2
        push_z, travel_z = low[2] + 0.005, low[2] + float(self.rng.uniform(0.1, 0.16))
        for i in order:
            b = blocks[i, :2]
            to_centre = math.atan2(centre[1] - b[1], centre[0] - b[0])
            for _ in range(10):
                ang = to_centre + self.rng.uniform(-1.2, 1.2)
                d = np.array([math.cos(ang), math.sin(ang)])
                start, end = b - 0.1 * d, b + float(self.rng.uniform(0.06, 0.12)) * d
                if np.all(start >= low[:2] + 0.01) and np.all(start <= high[:2] - 0.01):
                    end = np.clip(end, low[:2], high[:2])
                    self.waypoints = [
                        (np.r_[start, travel_z], 0.0),
                        (np.r_[start, travel_z], 1.0),
                        (np.r_[start, push_z], 1.0),
                        (np.r_[end, push_z], 1.0),
                        (np.r_[end, travel_z], 0.0),
                    ]
                    return
        # no reachable push: wander to a random point above the table
        self.waypoints = [(np.r_[self.rng.uniform(low[:2], high[:2]), travel_z], 0.0)]

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        ee = np.asarray(obs["state"][9:12], dtype=np.float64)
        blocks = np.asarray(obs["objects"], dtype=np.float64)
        if not self.waypoints:
            self._plan(ee, blocks)
            self.phase_steps = 0
        target, grip = self.waypoints[0]
        err = target - ee
        self.phase_steps += 1
        if np.linalg.norm(err) < 0.012 or self.phase_steps > 30:
            self.waypoints.pop(0)
            self.phase_steps = 0
        vel = err * 0.6
        n = np.linalg.norm(vel)
        if n > self.max_speed:
            vel *= self.max_speed / n
        vel += self.rng.normal(0, 0.003, 3)
        raw = np.r_[vel, 0.0, 0.0, self.yaw(), grip]
        action = 0.5 * self.prev + 0.5 * raw  # low-pass for smooth motion
        action[6] = grip
        self.prev = action
        lim = self.cfg.max_delta
        action[:3] = np.clip(action[:3], -lim, lim)
        return action.astype(np.float32)


def scripted_policy(name: str, rng: np.random.Generator, **kwargs: Any) -> Policy:
    """A stateful exploration policy `(obs) -> action` for the world `name` ("nav" or "manip").

    `kwargs` go to the policy (nav: `speed` m/step, `turn_rate` rad/step), e.g. a slower robot.
    """
    if name == "nav":
        return NavExplorer(rng, **kwargs)
    if name == "manip":
        return ManipPusher(rng, **kwargs)
    raise ValueError(f"unknown simulator {name!r}; choose from nav, manip")


def _realised_actions(name: str, pose_or_state: np.ndarray, commanded: np.ndarray) -> np.ndarray:
    """(T, D) realised actions from per-frame poses (nav, (T, 3)) or states (manip, (T, S)); last row zeros."""
    t = len(pose_or_state)
    x = pose_or_state.astype(np.float64)
    if name == "nav":
        out = np.zeros((t, 3))
        out[:-1] = se2_relative(x[:-1], x[1:])
        return out.astype(np.float32)
    out = np.zeros((t, 7))
    ee = x[:, 9:15]
    out[:-1, :3] = ee[1:, :3] - ee[:-1, :3]
    out[:-1, 3:6] = wrap_angle(ee[1:, 3:6] - ee[:-1, 3:6])
    out[:-1, 6] = commanded[:-1, 6]
    return out.astype(np.float32)


def _record(
    env: SimEnv,
    name: str,
    seed: int,
    frames: int,
    policy_seed: int | None,
    extras: bool,
    policy_kwargs: dict[str, Any] | None = None,
) -> Episode:
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    rng = np.random.default_rng([seed, 12345] if policy_seed is None else [policy_seed, 54321])
    policy = scripted_policy(name, rng, **(policy_kwargs or {}))
    obs, info = env.reset(seed=seed)
    keys = ["depth", "segmentation", "intrinsics", "extrinsics"] + (["pose"] if name == "nav" else ["objects"])
    rows: list[dict[str, np.ndarray]] = [obs]
    commanded = np.zeros((frames, env.action_space.shape[0]))
    events = 0
    for t in range(frames - 1):
        commanded[t] = policy(obs)
        obs, _, terminated, _, info = env.step(commanded[t].astype(np.float32))
        events += bool(info.get("collided", info.get("contact", False)))
        rows.append(obs)
        if terminated:
            raise RuntimeError(f"{name}: episode of scene {seed} terminated at step {t}")
    state = np.stack([r["state"] for r in rows]).astype(np.float32)
    basis = np.stack([r["pose"] for r in rows]) if name == "nav" else state
    ext = {k: np.stack([r[k] for r in rows]) for k in keys} if extras else {}
    meta = {
        "env": name,
        "scene_id": int(seed),
        "static_ids": [int(i) for i in info["static_ids"]],
        "size": int(env.size),
        "policy_seed": policy_seed,
        "policy_kwargs": dict(policy_kwargs or {}),
        "state_names": list(env.state_names),
        "action_names": list(env.action_names),
        "actions": "realised motion" + (" (gripper: commanded)" if name == "manip" else ""),
        ("collisions" if name == "nav" else "contact_steps"): int(events),
    }
    return Episode(
        frames=np.stack([r["rgb"] for r in rows]),
        actions=_realised_actions(name, basis, commanded),
        state=state,
        fps=float(env.fps),
        action_space=env.action_space_name,
        extras=ext,
        meta=meta,
    )


def record_episode(
    name: str,
    *,
    seed: int,
    frames: int,
    size: int = 64,
    policy_seed: int | None = None,
    extras: bool = True,
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Episode:
    """Run the scripted policy in scene `seed` for `frames` observations and return the episode.

    Returns an Episode with frames (T, H, W, 3) uint8, actions (T, D) float32 realised motion (last row
    zeros), state (T, S), extras depth/segmentation/intrinsics/extrinsics (+ nav `pose` (T, 3), manip
    `objects` (T, n_blocks, 7)) when `extras`. `env_kwargs` are world settings (e.g. `supersample=3`).
    """
    env = make(name, size=size, max_steps=max(int(frames), 1), **(env_kwargs or {}))
    try:
        return _record(env, name, seed, frames, policy_seed, extras, policy_kwargs)
    finally:
        env.close()


def record_episodes(
    name: str,
    *,
    seeds: list[int],
    frames: int,
    size: int = 64,
    progress: bool = True,
    extras: bool = True,
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Iterator[Episode]:
    """Yield one episode per seed (one env reused), with a tqdm progress bar over episodes."""
    seeds = list(seeds)
    env = make(name, size=size, max_steps=max(int(frames), 1), **(env_kwargs or {}))
    try:
        with tqdm(total=len(seeds), desc=f"simulate {name}", unit="ep", disable=not progress) as bar:
            for s in seeds:
                ep = _record(env, name, int(s), frames, None, extras, policy_kwargs)
                bar.update(1)
                yield ep
    finally:
        env.close()
