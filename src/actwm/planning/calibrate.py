"""Calibrate the agent's own stop threshold on TRAINING scenes (never on the task's episode scenes).

For each training scene (seeds `[0, n)`, inside the training range of `actwm data simulate` / the demo,
disjoint from task scenes >= 2e9): the goal image is rendered at a free pose; "near" views come from poses
inside the success region (< 0.4 m, < 25 degrees), "far" views from poses outside it: 0.7-2 m away in any
direction, 0.6-2 m straight behind the goal along its heading (the view that looks most like the goal), or
turned by 40-180 degrees. A wrong stop ends an episode while a missed stop costs a few actions, so the
threshold is the smallest one whose false-stop rate on far views is at most `max_false_stop` (5%).
"""

from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from actwm.geometry import se2_compose
from actwm.planning.nav_perception import CameraRig, Panorama, estimate_poses, floor_palette
from actwm.planning.scorers import GoalSimilarity
from actwm.sim import make

KINDS = ("near", "far", "near", "behind", "near", "turned")


def _offset(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A random planar offset (dx, dy, dyaw) from the goal pose of the given kind (see the module docstring)."""
    direction = rng.uniform(-math.pi, math.pi)
    small_turn = rng.uniform(-1, 1) * math.radians(20)
    if kind == "near":
        dist = rng.uniform(0, 0.4)
        return np.array([dist * math.cos(direction), dist * math.sin(direction), small_turn])
    if kind == "far":
        dist = rng.uniform(0.7, 2.0)
        return np.array([dist * math.cos(direction), dist * math.sin(direction), small_turn])
    if kind == "behind":
        return np.array([-rng.uniform(0.6, 2.0), rng.uniform(-0.2, 0.2), small_turn])
    dist = rng.uniform(0, 0.4)
    yaw = rng.choice([-1, 1]) * rng.uniform(math.radians(40), math.pi)
    return np.array([dist * math.cos(direction), dist * math.sin(direction), yaw])


def training_goals(size: int, scenes: int, supersample: int = 1, desc: str = "calibrating stop"):
    """Yield `(env.unwrapped, goal pose (3,), goal image (H, W, 3) uint8)` for training scenes `0..scenes-1`,
    the goal at each scene's own free start pose (`supersample`: the renderer's anti-aliasing factor)."""
    env = make("nav", size=size, supersample=supersample)
    try:
        for scene in tqdm(range(scenes), desc=desc, leave=False):
            obs, _ = env.reset(seed=scene)
            goal_pose = obs["pose"].astype(np.float64)
            yield env.unwrapped, goal_pose, env.unwrapped.render_pose(goal_pose)["rgb"]
    finally:
        env.close()


def stop_samples(
    scorer: GoalSimilarity, scenes: int = 24, per_scene: int = 24, size: int = 64, seed: int = 0, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Similarities `(near,)` and `(far,)` of views to goal images on training scenes `0..scenes-1`
    (`supersample`: the renderer's anti-aliasing factor, as the task's observations use)."""
    rng = np.random.default_rng(seed)
    near, far = [], []
    for u, goal_pose, goal in training_goals(size, scenes, supersample):
        for k in range(per_scene):
            kind = KINDS[k % len(KINDS)]
            pose = se2_compose(goal_pose, _offset(rng, kind))
            if not u.free_segment(goal_pose[:2], pose[:2]):
                continue
            sim = scorer.image_similarity(u.render_pose(pose)["rgb"], goal)
            (near if kind == "near" else far).append(sim)
    return np.asarray(near), np.asarray(far)


def best_threshold(near: np.ndarray, far: np.ndarray, max_false_stop: float = 0.05) -> tuple[float, float, float]:
    """(threshold, recall on near, false-stop rate on far): the smallest threshold with false stops <= the cap."""
    if len(near) == 0 or len(far) == 0:
        raise ValueError("stop calibration needs both near and far samples")
    for t in np.unique(np.concatenate([near, far])):
        false_stop = float((far >= t).mean())
        if false_stop <= max_false_stop:
            return float(t), float((near >= t).mean()), false_stop
    return float(np.max(far)) + 1e-6, 0.0, 0.0


def calibrate_stop(scorer: GoalSimilarity, scenes: int = 24, size: int = 64, seed: int = 0) -> dict[str, float]:
    """The stop threshold for `scorer` with its balanced accuracy and sample counts."""
    near, far = stop_samples(scorer, scenes=scenes, size=size, seed=seed)
    threshold, recall, false_stop = best_threshold(near, far)
    return {
        "threshold": threshold,
        "recall": recall,
        "false_stop_rate": false_stop,
        "near": len(near),
        "far": len(far),
        "scenes": scenes,
        "metric": scorer.metric,
    }


def _lattice_offset(rng: np.random.Generator, kind: str) -> np.ndarray:
    """An offset from the goal pose as `PoseSearchPolicy` meets it on arrival: its heading on the goal's
    22.5-degree lattice (0 or one turn off when far), "near" within lattice rounding (< 0.3 m)."""
    direction = rng.uniform(-math.pi, math.pi)
    if kind == "near":
        dist, yaw = rng.uniform(0, 0.3), 0.0
    elif kind == "behind":
        return np.array([-rng.uniform(0.6, 2.0), 0.0, 0.0])
    else:
        dist, yaw = rng.uniform(0.7, 2.0), float(rng.integers(-1, 2)) * math.pi / 8
    return np.array([dist * math.cos(direction), dist * math.sin(direction), yaw])


def check_samples(scenes: int = 24, per_scene: int = 12, size: int = 64, seed: int = 0) -> tuple[np.ndarray, ...]:
    """`PoseSearchPolicy`'s arrival check on training scenes `0..scenes-1`: minus its cost (higher: more
    like the goal's pose) at "near" views `(near,)` and at far or behind views `(far,)` (`_lattice_offset`)."""
    rig = CameraRig(size)
    rng = np.random.default_rng(seed)
    near, far = [], []
    for u, goal_pose, goal in training_goals(size, scenes, desc="calibrating the arrival check"):
        around = [u.render_pose(se2_compose(goal_pose, np.array([0, 0, k * math.pi / 4])))["rgb"] for k in range(8)]
        palette = floor_palette([*around, goal])
        for k in range(per_scene):
            kind = ("near", "far", "near", "behind")[k % 4]
            pose = se2_compose(goal_pose, _lattice_offset(rng, kind))
            if not u.free_segment(goal_pose[:2], pose[:2]):
                continue
            pano = Panorama(rig)
            pano.add(u.render_pose(pose)["rgb"], 0)
            est = estimate_poses(pano, goal, radius=1.5, turns=(-2, -1, 0, 1, 2), palette=palette)[0]
            (near if kind == "near" else far).append(-est.cost)
    return np.asarray(near), np.asarray(far)


def calibrate_check(scenes: int = 24, size: int = 64, seed: int = 0) -> dict[str, float]:
    """`PoseSearchPolicy.check_cost`: the largest arrival-check cost with <= 5% passes on far views."""
    near, far = check_samples(scenes=scenes, size=size, seed=seed)
    threshold, recall, false_stop = best_threshold(near, far)
    return {
        "check_cost": -threshold,
        "recall": recall,
        "false_stop_rate": false_stop,
        "near": len(near),
        "far": len(far),
        "scenes": scenes,
    }
