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

from actwm.planning.tasks.common import (
    TASK_SCENE_BASE,
    EpisodeSet,
    bootstrap_interval,
    check_disjoint,
    scene_stream,
    spl,
    summarize,
    wilson_interval,
)
from actwm.planning.tasks.imagenav import (
    ImageNavConfig,
    ImageNavEpisode,
    ImageNavTask,
    integrate_plan,
    oracle_plan,
)
from actwm.planning.tasks.push import PushConfig, PushEpisode, PushOracle, PushTask

TASKS = {"imagenav": ImageNavTask, "push": PushTask}

__all__ = [
    "TASKS",
    "TASK_SCENE_BASE",
    "EpisodeSet",
    "ImageNavConfig",
    "ImageNavEpisode",
    "ImageNavTask",
    "PushConfig",
    "PushEpisode",
    "PushOracle",
    "PushTask",
    "bootstrap_interval",
    "check_disjoint",
    "integrate_plan",
    "oracle_plan",
    "scene_stream",
    "spl",
    "summarize",
    "wilson_interval",
]
