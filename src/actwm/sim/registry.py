"""The built-in worlds by name (`actwm.sim.make`), apart from the package so its own modules can use it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from actwm.sim.manip import ManipEnv
from actwm.sim.nav import NavEnv

ENVS: dict[str, type] = {"nav": NavEnv, "manip": ManipEnv}


def make(name: str, *, size: int = 64, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Create a built-in world: `name` in {"nav", "manip"}; `kwargs` are fields of NavConfig / ManipConfig.

    `seed` (optional) is the scene id of the first `reset()` without a seed. Each env owns one pybullet
    DIRECT client; call `close()` to release it.
    """
    if name not in ENVS:
        raise ValueError(f"unknown simulator {name!r}; choose from {', '.join(ENVS)}")
    return ENVS[name](size=size, seed=seed, **kwargs)
