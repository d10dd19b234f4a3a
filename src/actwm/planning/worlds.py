"""World models behind the planning interface: "none", the simulator as "oracle", actwm checkpoints, peers.

    world = make_world_model("runs/demo/model")       # an actwm checkpoint directory
    world = make_world_model("oracle")                 # flagged: reads the true simulator state
    world.bind(task); world.reset(seed)
    frames = world.imagine(obs, plans)                 # (M, L, 3, H, W) in [0, 1]

A peer's model is one subclass of `VideoWorld` that implements `generate` for its control modality
("action": raw low-level actions, "camera": poses, "text": prompts); translation from agent plans and
the choice of the frames that close each agent action happen here, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actwm.models.world_model import WorldModel
from actwm.pixels import signed_to_unit, uint8_to_signed, uint8_to_unit
from actwm.planning.interface import (
    STOP,
    ImaginedWorld,
    Observation,
    Task,
    register_world_model,
    registered_world_models,
    world_factory,
)
from actwm.planning.translate import (
    FrameStep,
    camera_trajectory,
    closing_frames,
    frames_per_action,
    model_actions,
    text_prompt,
)
from actwm.rollout.rollout import RolloutConfig, rollout


@register_world_model("none")
class NoWorld:
    """No world model: `imagine` returns None and the loop follows the proposer's first plan."""

    name = "none"
    is_oracle = False
    imagines = False
    vocabularies = ("nav_discrete", "nav3", "ee7")

    def bind(self, task: Task) -> None:
        pass

    def reset(self, seed: int) -> None:
        pass

    def imagine(self, observation: Observation, plans: np.ndarray) -> torch.Tensor | None:
        return None

    def fingerprint(self) -> dict[str, Any]:
        return {"type": "none"}


@register_world_model("oracle")
class OracleWorld:
    """ORACLE (upper bound): snapshot the true simulator state, execute each plan, render, restore.

    Uses `task.env.unwrapped.snapshot()` / `restore(state)` (exact) and `task.env_actions(action)`.
    """

    name = "oracle"
    is_oracle = True
    vocabularies = ("nav_discrete", "nav3", "ee7")

    def __init__(self) -> None:
        self.task: Task | None = None

    def bind(self, task: Task) -> None:
        sim = task.env.unwrapped
        if not (hasattr(sim, "snapshot") and hasattr(sim, "restore")):
            raise ValueError(f"oracle world model: simulator {type(sim).__name__} has no snapshot()/restore()")
        self.task = task

    def reset(self, seed: int) -> None:
        pass

    def imagine(self, observation: Observation, plans: np.ndarray) -> torch.Tensor:
        if self.task is None:
            raise RuntimeError("oracle world model: call bind(task) first")
        task, sim = self.task, self.task.env.unwrapped
        plans = task.vocabulary.validate(plans)
        snap = sim.snapshot()
        videos = []
        try:
            for plan in plans:
                sim.restore(snap)
                frames = []
                rgb = observation.rgb
                for action in plan:
                    if not (task.vocabulary.kind == "discrete" and int(action) == STOP):  # stop: no motion
                        for env_action in task.env_actions(action):
                            rgb = task.env.step(env_action)[0]["rgb"]
                    frames.append(rgb)
                videos.append(np.stack(frames))
        finally:
            sim.restore(snap)
        return uint8_to_unit(np.stack(videos))

    def fingerprint(self) -> dict[str, Any]:
        return {"type": "oracle", "is_oracle": True}


def check_fits(
    world: str,
    task: Task,
    vocabularies: tuple[str, ...],
    image_size: tuple[int, int] | list[int] | None = None,
    motion_space: str | None = None,
) -> None:
    """Raise `ValueError` naming `world` and the task unless the world model takes the task's action vocabulary
    (and motion space, when the model has one) and its frame size (None: any size)."""
    vocab = task.vocabulary
    if vocab.name not in vocabularies or (motion_space and vocab.motion_space != motion_space):
        raise ValueError(
            f"{world} (action space {motion_space or 'any'}) does not fit task {task.name!r}, whose agent acts in "
            f"{vocab.name!r} ({vocab.motion_space})"
        )
    if image_size is not None and tuple(task.image_size) != tuple(image_size):
        raise ValueError(
            f"{world} takes {image_size[0]}x{image_size[1]} frames; task {task.name!r} observes "
            f"{task.image_size[0]}x{task.image_size[1]}"
        )


class VideoWorld:
    """Base of video world models: translate plans for `control`, call `generate`, keep the closing frames.

    Subclasses set `control` ("action", "camera" or "text") and implement `generate`. `frame_step` is the
    model's motion per frame (None: one model frame per agent action).
    """

    name = "video"
    is_oracle = False
    control = "action"
    vocabularies: tuple[str, ...] = ("nav_discrete", "nav3", "ee7")
    motion_space: str | None = None  # the action space the model was trained on (None: any)
    image_size: tuple[int, int] | None = None

    def __init__(self, frame_step: FrameStep | None = None, seed: int = 0) -> None:
        self.frame_step = frame_step
        self.seed = seed
        self.task: Task | None = None
        self._calls = 0

    def bind(self, task: Task) -> None:
        check_fits(f"world model {self.name!r}", task, self.vocabularies, self.image_size, self.motion_space)
        self.task = task

    def reset(self, seed: int) -> None:
        self.seed, self._calls = seed, 0

    def controls(self, plans: np.ndarray) -> tuple[Any, int]:
        """Plans -> (the model's control input, frames per agent action n)."""
        vocab = self.task.vocabulary
        if self.control == "camera":
            return camera_trajectory(vocab, plans), 1
        if self.control == "text":
            return [text_prompt(vocab, plan) for plan in plans], 1
        n = frames_per_action(vocab, self.frame_step)
        return model_actions(vocab, plans, n), n

    def imagine(self, observation: Observation, plans: np.ndarray) -> torch.Tensor:
        if self.task is None:
            raise RuntimeError(f"world model {self.name!r}: call bind(task) first")
        plans = self.task.vocabulary.validate(plans)
        controls, n = self.controls(plans)
        seeds = [self.seed * 100_003 + self._calls * 1009 + i for i in range(len(plans))]
        self._calls += 1
        video = self.generate(uint8_to_signed(observation.rgb)[None], controls, seeds)  # (M, 1 + L*n, 3, H, W)
        return signed_to_unit(video[:, closing_frames(plans.shape[1], n)]).float()

    def generate(self, first_frame: torch.Tensor, controls: Any, seeds: list[int]) -> torch.Tensor:
        """`(1, 3, H, W)` in [-1, 1] and M controls -> `(M, 1 + L*n, 3, H, W)` in [-1, 1] (frame 0 = the start)."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        step = None if self.frame_step is None else [self.frame_step.translation, self.frame_step.rotation]
        return {"type": self.name, "control": self.control, "frame_step": step}


class CheckpointWorld(VideoWorld):
    """An actwm `WorldModel`: all M candidates in ONE batched `rollout` call (low-level actions). `compile`:
    `torch.compile` the backbone for imagination (`RolloutConfig.compile`): the first decision pays the compilation,
    every later one runs faster."""

    name = "actwm"
    control = "action"

    def __init__(
        self,
        wm: WorldModel,
        rollout_cfg: RolloutConfig | None = None,
        frame_step: FrameStep | None | str = "auto",
        seed: int = 0,
        source: str | None = None,
        compile: bool = False,
    ) -> None:
        self.wm = wm.eval()
        self.rollout_cfg = rollout_cfg or RolloutConfig(steps=10)
        if compile:
            self.rollout_cfg = replace(self.rollout_cfg, compile=True)
        self.motion_space = wm.action_space.name
        self.vocabularies = tuple(v for v in ("nav_discrete", "nav3", "ee7") if _motion(v) == self.motion_space)
        size = wm.config.image_size
        self.image_size = None if size is None else (int(size[0]), int(size[1]))
        self.source = source
        super().__init__(frame_step_from_stats(wm) if frame_step == "auto" else frame_step, seed)

    def generate(self, first_frame: torch.Tensor, controls: np.ndarray, seeds: list[int]) -> torch.Tensor:
        raw = torch.as_tensor(controls, dtype=torch.float32)
        return rollout(self.wm, first_frame, raw, cfg=self.rollout_cfg, seeds=seeds)

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        out.update(
            checkpoint=self.source,
            checkpoint_sha256=checkpoint_sha256(self.source) if self.source else None,
            backbone=self.wm.config.backbone,
            action_space=self.motion_space,
            rollout=self.rollout_cfg.fingerprint(),
        )
        return out


def _motion(vocabulary: str) -> str:
    return "ee7" if vocabulary == "ee7" else "nav3"


def frame_step_from_stats(wm: WorldModel) -> FrameStep | None:
    """The model's per-frame motion from its action statistics (delta mode: |mean| + 2 std), else None."""
    space = wm.action_space
    if wm.config.action_mode != "delta" or all(s == 1.0 for s in space.std):
        return None
    mean, std = np.abs(np.asarray(space.mean)), np.asarray(space.std)
    reach = mean + 2 * std
    if space.name == "nav3":
        return FrameStep(float(np.hypot(reach[0], reach[1])), float(reach[2]))
    if space.name == "ee7":
        return FrameStep(float(reach[:3].max()), float(reach[3:6].max()))
    return None


def checkpoint_sha256(directory: str | Path) -> str:
    """sha256 over a checkpoint directory's config.json and model.safetensors (in that order)."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with open(Path(directory) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@register_world_model("actwm")
def _checkpoint_factory(source: str, **options: Any) -> CheckpointWorld:
    return CheckpointWorld(WorldModel.load(source), source=str(source), **options)


def make_world_model(spec: str, **options: Any) -> ImaginedWorld:
    """ "none", "oracle", "http://HOST:PORT" (remote), a registered type name, or an actwm checkpoint directory."""
    if spec.startswith(("http://", "https://")):
        return world_factory("http")(spec, **options)
    if spec in ("none", "oracle"):
        return world_factory(spec)()
    if Path(spec).is_dir():
        return world_factory("actwm")(spec, **options)
    if ":" in spec and spec.split(":", 1)[0] in registered_world_models():
        kind, rest = spec.split(":", 1)
        return world_factory(kind)(rest, **options)
    raise ValueError(
        f"world model {spec!r}: not 'none', 'oracle', an http(s):// URL, TYPE:SOURCE of a registered type, "
        "or an existing checkpoint directory"
    )


# registers "diffusers-i2v" (the zero-shot text-driven pipeline); at the end: it subclasses VideoWorld above
from actwm.planning import worlds_diffusers as _worlds_diffusers  # noqa: E402, F401
