"""A world model behind the same gymnasium `reset`/`step` API as the simulators.

Planners and policies written against `actwm.sim.make("nav")` run unchanged on an imagined world:

    env = WorldModelEnv(WorldModel.load("runs/demo/model"))
    obs, info = env.reset(options={"rgb": first_frame})      # (H, W, 3) uint8
    obs, reward, terminated, truncated, info = env.step(np.array([0.25, 0.0, 0.0]))

Each `step` takes one raw action (the dataset convention: the motion from the current frame to the
next) and imagines the next frame, conditioned on the current one. Reward is 0 (world models predict
observations, not rewards); tasks wrap the env to score observations.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from actwm.models.world_model import WorldModel
from actwm.rollout.rollout import RolloutConfig, rollout


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """`(H, W, 3)` or `(T, H, W, 3)` uint8 -> `(1 or T, 3, H, W)` float in [-1, 1]."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.shape[-1] != 3 or arr.ndim not in (3, 4):
        raise ValueError(f"frames must be uint8 (H, W, 3) or (T, H, W, 3), got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.array(arr, copy=True)).float().div(127.5).sub(1.0)
    t = t.unsqueeze(0) if t.ndim == 3 else t
    return t.permute(0, 3, 1, 2).contiguous()


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """`(..., 3, H, W)` in [-1, 1] -> `(..., H, W, 3)` uint8."""
    x = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


class WorldModelEnv(gym.Env):
    """gymnasium env whose dynamics are a world model's imagination."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, wm: WorldModel, rollout_cfg: RolloutConfig | None = None, max_steps: int = 1000) -> None:
        self.wm = wm.eval()
        self.cfg = rollout_cfg or RolloutConfig(steps=10)
        space = wm.action_space
        self.action_space = gym.spaces.Box(-np.inf, np.inf, shape=(space.dim,), dtype=np.float32)
        h, w = wm.config.image_size or (64, 64)
        self.observation_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (h, w, 3), np.uint8)})
        self.max_steps = max_steps
        self._frame: torch.Tensor | None = None
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if not options or "rgb" not in options:
            raise ValueError("WorldModelEnv.reset needs options={'rgb': start frame (H, W, 3) uint8}")
        self._frame = to_tensor(options["rgb"])
        self._t = 0
        if seed is not None:
            self.cfg = RolloutConfig(**{**self.cfg.__dict__, "seed": seed})
        return {"rgb": to_uint8(self._frame[0])}, {"step": 0}

    def step(self, action):
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        a = torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, 1, -1)
        self.wm.action_space.validate(a, "action")
        raw = torch.cat([a, torch.zeros_like(a)], dim=1)  # frame t -> t+1, then stand still
        cfg = RolloutConfig(**{**self.cfg.__dict__, "seed": self.cfg.seed + self._t})
        video = rollout(self.wm, self._frame, raw, cfg=cfg)
        self._frame = video[:, 1]
        self._t += 1
        obs = {"rgb": to_uint8(self._frame[0])}
        return obs, 0.0, False, self._t >= self.max_steps, {"step": self._t}

    def render(self):
        return None if self._frame is None else to_uint8(self._frame[0])
