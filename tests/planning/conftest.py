"""Fixtures for the planning tests: a minimal ImageNav episode on the real `nav` simulator.

`MiniImageNav` implements the `actwm.planning.interface.Task` protocol in a few lines (start pose, goal
pose, goal image rendered by the simulator, success within 0.5 m and 30 degrees), so the loop's tests do
not depend on the episode sets of `actwm.planning.tasks`.
"""

import math

import numpy as np
import pytest

from actwm import sim
from actwm.geometry import wrap_angle
from actwm.planning.interface import Observation, get_vocabulary


class MiniImageNav:
    name = "imagenav-mini"

    def __init__(self, size: int = 32, budget: int = 12):
        self.env = sim.make("nav", size=size)
        self.vocabulary = get_vocabulary("nav_discrete")
        self.budget = budget
        self.image_size = (size, size)
        self.goal_pose = None

    def reset(self, episode):
        scene, start, goal = episode
        obs, _ = self.env.reset(seed=scene, options={"pose": goal})
        self.goal = obs["rgb"].copy()
        self.goal_pose = np.asarray(goal, dtype=np.float64)
        obs, _ = self.env.reset(seed=scene, options={"pose": start})
        self.steps, self.path = 0, 0.0
        return self._obs(obs)

    def _obs(self, obs):
        return Observation(rgb=obs["rgb"], goal=self.goal, step=self.steps, pose=obs["pose"].astype(np.float64))

    def env_actions(self, action):
        return [np.asarray(self.vocabulary.motions[int(action)], dtype=np.float32)]

    def step(self, action):
        before = self.env.unwrapped.pose.copy()
        for a in self.env_actions(action):
            obs = self.env.step(a)[0]
        self.steps += 1
        self.path += float(np.hypot(*(self.env.unwrapped.pose[:2] - before[:2])))
        return self._obs(obs)

    def at_goal(self):
        pose = self.env.unwrapped.pose
        dist = float(np.hypot(*(pose[:2] - self.goal_pose[:2])))
        return dist <= 0.5 and abs(float(wrap_angle(pose[2] - self.goal_pose[2]))) <= math.radians(30)

    def result(self, stopped):  # pure: reads the pose, changes nothing
        return {"success": bool(self.at_goal()), "stopped": stopped, "actions": self.steps, "path_length": self.path}

    def close(self):
        self.env.close()


def free_episode(task: MiniImageNav, scene: int, turns: int, forwards: int):
    """An episode whose goal is reached by `turns` left turns then `forwards` steps (no collisions)."""
    env = task.env
    obs, _ = env.reset(seed=scene)
    start = obs["pose"].astype(np.float64)
    pose = start.copy()
    pose[2] = wrap_angle(pose[2] + turns * math.pi / 8)
    for _ in range(forwards):
        pose = pose + np.array([0.25 * math.cos(pose[2]), 0.25 * math.sin(pose[2]), 0.0])
    if env.unwrapped._collides(pose[0], pose[1]):
        return None
    return scene, start, pose


@pytest.fixture(scope="module")
def mini_task():
    task = MiniImageNav()
    yield task
    task.close()
