"""The unified action API, checked against the simulator that executes the same motions."""

import math

import numpy as np
import pytest

from actwm import sim
from actwm.geometry import se2_compose, wrap_angle
from actwm.planning.interface import get_vocabulary
from actwm.planning.translate import (
    FrameStep,
    camera_trajectory,
    closing_frames,
    frames_per_action,
    model_actions,
    split_nav3,
    text_prompt,
)

NAV = get_vocabulary("nav_discrete")
PLAN = np.array([[1, 0, 0, 2, 0, 1, 1, 0, 3]])  # left, fwd, fwd, right, fwd, left, left, fwd, stop


def _pose_diff(a, b):
    return max(np.abs(a[..., :2] - b[..., :2]).max(), np.abs(wrap_angle(a[..., 2] - b[..., 2])).max())


@pytest.fixture(scope="module")
def nav_env():
    env = sim.make("nav", size=16)
    yield env
    env.close()


def _start(env, seed=5):
    obs, _ = env.reset(seed=seed)
    return obs["pose"].astype(np.float64)


def test_camera_trajectory_matches_the_poses_the_simulator_reaches(nav_env):
    start = _start(nav_env)
    poses = camera_trajectory(NAV, PLAN, start)[0]  # (L, 3)
    for step, action in enumerate(PLAN[0]):
        obs, _, _, _, info = nav_env.step(nav_env.unwrapped.discrete(NAV.primitives[action]))
        assert not info["collided"]
        assert _pose_diff(obs["pose"].astype(np.float64), poses[step]) < 1e-5


def test_agent_action_spans_model_frames_at_another_frame_rate(nav_env):
    # a model trained at 0.08 m and 0.3 rad per frame: "forward 0.25 m" takes 4 of its frames
    n = frames_per_action(NAV, FrameStep(0.08, 0.3))
    assert n == 4
    raw = model_actions(NAV, PLAN, n)  # (1, 1 + L*n, 3)
    assert raw.shape == (1, 1 + PLAN.shape[1] * n, 3)
    assert np.abs(raw[0, :, 0]).max() <= 0.08 + 1e-12 and np.abs(raw[0, :, 2]).max() <= 0.3
    # execute the model-rate rows in the simulator: at the closing frames it stands where the agent actions lead
    start = _start(nav_env)
    expected = camera_trajectory(NAV, PLAN, start)[0]
    poses = [start]
    for row in raw[0, :-1]:
        obs, _, _, _, info = nav_env.step(row.astype(np.float32))
        assert not info["collided"]
        poses.append(obs["pose"].astype(np.float64))
    reached = np.stack(poses)[closing_frames(PLAN.shape[1], n)]
    assert _pose_diff(reached, expected) < 1e-4


def test_split_nav3_composes_back_to_the_motion():
    rng = np.random.default_rng(0)
    motions = np.stack([rng.uniform(-0.5, 0.5, 20), rng.uniform(-0.5, 0.5, 20), rng.uniform(-1.5, 1.5, 20)], -1)
    sub = split_nav3(motions, 5)  # (20, 5, 3)
    pose = np.zeros((20, 3))
    for k in range(5):
        pose = se2_compose(pose, sub[:, k])
    assert np.abs(pose - motions).max() < 1e-9
    assert np.allclose(sub[:, 0], sub[:, 3])  # equal sub-motions


def test_ee7_gripper_stays_absolute_and_deltas_split():
    ee = get_vocabulary("ee7")
    plan = np.array([[[0.04, 0.0, -0.02, 0.0, 0.0, 0.2, 1.0]]])
    n = frames_per_action(ee, FrameStep(0.02, 0.1))
    assert n == 3  # 0.05 m bound / 0.02 -> 3 frames; 0.25 rad / 0.1 -> 3
    raw = model_actions(ee, plan, n)
    assert np.allclose(raw[0, :n, :6].sum(0), plan[0, 0, :6])
    assert np.all(raw[0, :n, 6] == 1.0)


def test_text_prompt_uses_world_in_world_wording():
    text = text_prompt(NAV, np.array([0, 0, 1]))
    assert text == (
        "The camera moves forward by 0.25m. The camera moves forward by 0.25m. The camera rotates left by 22.5°."
    )
    assert math.isclose(NAV.motions[1][2], math.radians(22.5))


def test_plans_outside_vocabulary_or_bounds_are_refused():
    with pytest.raises(ValueError, match="outside the nav_discrete vocabulary"):
        model_actions(NAV, np.array([[0, 7]]), 1)
    with pytest.raises(ValueError, match="dimension 0 holds"):
        get_vocabulary("nav3").validate(np.array([[[0.9, 0.0, 0.0]]]))
