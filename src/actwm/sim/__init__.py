"""Built-in simulated worlds on pybullet (headless, CPU): `nav` and `manip`.

    env = actwm.sim.make("nav", size=64)
    obs, info = env.reset(seed=3)          # scene id == seed
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.discrete("forward"))

Observations are dicts with `rgb` (H, W, 3) uint8, `depth` (H, W) float32 metres, `segmentation`
(H, W) int32 pybullet body ids (-1 background), `intrinsics` (3, 3), `extrinsics` (4, 4) world-to-camera
(OpenCV axes), `state`, plus `pose` (nav) or `objects` (manip block poses). See `actwm.sim.common` for
the camera conventions.

Exact snapshot / restore (for planners that imagine with the simulator and come back):

    state = env.unwrapped.snapshot()       # pybullet saveState + the env's own state (pose, steps, RNG, ...)
    obs1 = env.step(a)[0]
    env.unwrapped.restore(state)           # valid until the env's next reset()
    obs2 = env.step(a)[0]                  # bit-identical to obs1
"""

from __future__ import annotations

from actwm.sim.manip import ManipConfig, ManipEnv
from actwm.sim.nav import DISCRETE_ACTIONS, NavConfig, NavEnv
from actwm.sim.registry import ENVS, make
from actwm.sim.scripted import record_episode, record_episodes, scripted_policy

__all__ = [
    "DISCRETE_ACTIONS",
    "ENVS",
    "ManipConfig",
    "ManipEnv",
    "NavConfig",
    "NavEnv",
    "make",
    "record_episode",
    "record_episodes",
    "scripted_policy",
]
