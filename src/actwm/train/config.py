"""Typed training configuration with named presets.

`TrainConfig` holds every knob of a fine-tuning run (data, model, optimisation, clip sampling,
checkpointing, scale-out). It is validated at construction (a `ValueError` names the field), saved as
`train_config.json` beside every checkpoint, and overridable field by field from the CLI.

Presets (`TrainConfig.preset(name, **overrides)`):

- `tiny-cpu`: the demo-sized default, a tiny Wan 2.1 backbone at 32 px on a laptop CPU.
- `svd-8gpu`: EgoWM's SVD recipe (appendix B): lr 1e-5 for the backbone, 1e-4 (10x) for the action
  module, 8 future frames after 1 context frame, 5 fps clips, bf16, DDP over 8 GPUs.
- `cosmos2-2b-8gpu`: EgoWM's Cosmos-Predict2-2B recipe: lr 1e-6 / 1e-5 (10x), 16 future frames,
  5 fps, bf16, FSDP over 8 GPUs.

The paper gives the learning rates, the 10x action multiplier, the frame rate and the horizons; the
step counts, batch sizes, warmup and weight decay of the GPU presets are our choices (not published).
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from actwm.checks import ConfigError, require, require_at_least, require_choice, require_positive, require_range
from actwm.data.clips import ClipConfig
from actwm.models.config import ENCODER_KEYS, WorldModelConfig, nest_encoder_keys
from actwm.models.world_model import PRESETS as MODEL_PRESETS

TRAIN_MODES = ("full", "lora", "frozen")
MIXED_PRECISION = ("no", "bf16", "fp16")
DISTRIBUTED = ("auto", "ddp", "fsdp")
SCHEDULES = ("cosine", "constant")
SDPA_BACKENDS = ("math", "flash", "efficient", "cudnn")
OPTIMIZER_IMPLS = ("default", "foreach", "fused")
CLIP_FIELDS = ("split", "context", "horizon", "stride", "target_fps", "action_mode", "normalise", "size")
_CLIP = ClipConfig()  # the clip sampler's defaults are the run's


@dataclass
class TrainConfig:
    """Settings of one training run.

    Attributes:
        data: LeRobot store root (None when a dataset object is passed to `train`).
        out: output directory (`checkpoints/`, `final/`, `metrics.csv`, `train_config.json`).
        model: world-model preset name (`svd-tiny`, `cosmos-tiny`, `wan2.1-tiny`, `wan2.2-tiny`, `svd`,
            `cosmos2-2b`, `wan2.1-1.3b`, `wan2.2-ti2v-5b`).
        model_overrides: extra `WorldModelConfig` fields for the preset (e.g. {"encoder": {"hidden_dim": 128}},
            which updates the preset's encoder settings key by key; flat encoder keys ({"hidden_dim": 128}) work too).
        init_from: a saved world-model directory to start from (e.g. the passive stage's `final/`).
        train_mode: "full", "lora" (LoRA adapters + action encoder) or "frozen" (action encoder only).
        lora_rank, lora_alpha: LoRA settings (alpha None = rank).
        state_dim: size of the initial-state embedding (0 = off); must match the dataset's state.
        steps: optimizer steps in total.
        batch_size: clips per micro-batch per process.
        grad_accum: micro-batches per optimizer step.
        lr: backbone learning rate; the action module trains at `lr * action_lr_mult`.
        weight_decay, betas: AdamW settings.
        warmup_steps, schedule, min_lr_ratio: linear warmup then cosine decay to `min_lr_ratio * lr`
            (or constant).
        grad_clip: max global gradient norm (0 = off).
        mixed_precision: "no", "bf16" (autocast; CPU or GPU) or "fp16" (GPU only, with loss scaling).
        action_dropout: probability of zeroing a clip's action embedding (classifier-free guidance).
        passive: the passive stage on action-free clips: action dropout 1 (the bare backbone) and the
            action encoder frozen.
        ema_decay: decay of an exponential moving average of the trainable weights (None = off); the
            final model is saved with the EMA weights.
        split, context, horizon, stride, target_fps, action_mode, normalise, size: clip sampler
            settings (see `actwm.data.clips.ClipDataset`); frames per clip = context + horizon.
        num_workers: DataLoader worker processes.
        seed: seeds data order, noise and initialisation; everything random is a function of
            (seed, step, micro-batch, rank), so resumed runs repeat an uninterrupted one exactly.
        checkpoint_every: optimizer steps between checkpoints (0 = only at the end).
        keep_last: checkpoints kept on disk.
        log_every: steps between rows of `metrics.csv` (the mean loss of those steps).
        resume: continue from the newest complete checkpoint in `out` (start fresh when there is none).
        distributed: "auto" (whatever `accelerate launch` / `torchrun` set up), "ddp" or "fsdp".
        threads: torch CPU threads (None = torch's default).
        cpu: force CPU even where a GPU exists.
        tensorboard: also log to TensorBoard (needs the `tensorboard` package).
        wandb_project: also log to Weights & Biases (needs `wandb`); None = off.
        compile: `torch.compile` the backbone (inductor; CPU or GPU). Speed switches like this one are off
            by default; `benchmarks/train_step.py` measures each (speedup and loss-curve drift).
        channels_last: channels-last memory format for the model's convolution weights.
        sdpa_backend: force one scaled-dot-product-attention kernel ("math", "flash", "efficient",
            "cudnn"); None lets torch choose.
        optimizer_impl: AdamW implementation: "default" (torch's choice: a per-parameter loop on CPU),
            "foreach" (multi-tensor) or "fused".
        conditioning: "actions" (EgoWM action embedding), "kvaf" (EA-WM KVAF stream; the clips' KVAF videos are
            rendered from their joints and calibration with `actwm.robots`) or "kvaf+actions" (both).
        kvaf_stage: KVAF two-stage training: 1 = fusion frozen, 2 = fusion trained (run 1, then 2 with init_from).
        robot: the `actwm.robots` preset whose arm the KVAF videos draw.
        fast_paths: let the Wan backbone's fast paths (`actwm.models.wan_fast.TRAINING_PATHS`) act in training
            too: the same loss curve and parameter updates to float rounding (Wan models only), eager or compiled,
            in float32 or bf16.
    """

    data: str | None = None
    out: str = "runs/train"
    model: str = "wan2.1-tiny"
    model_overrides: dict = field(default_factory=dict)
    init_from: str | None = None
    train_mode: str = "full"
    lora_rank: int = 16
    lora_alpha: float | None = None
    state_dim: int = 0
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    action_lr_mult: float = 10.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    action_dropout: float = 0.0
    passive: bool = False
    ema_decay: float | None = None
    split: str = "train"
    context: int = _CLIP.context
    horizon: int = _CLIP.horizon
    stride: int = _CLIP.stride
    target_fps: float | None = _CLIP.target_fps
    action_mode: str = _CLIP.action_mode
    normalise: str = _CLIP.normalise
    size: int | None = _CLIP.size
    num_workers: int = 0
    seed: int = 0
    checkpoint_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    resume: bool = False
    distributed: str = "auto"
    threads: int | None = None
    cpu: bool = False
    tensorboard: bool = False
    wandb_project: str | None = None
    compile: bool = False
    channels_last: bool = False
    sdpa_backend: str | None = None
    optimizer_impl: str = "default"
    conditioning: str = "actions"
    kvaf_stage: int = 2
    robot: str = "manip"
    fast_paths: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON lists -> tuple
        for name in ("data", "out", "init_from"):  # accept pathlib paths
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        self._check_types()
        self._check_values()

    # -- validation ----------------------------------------------------------------------------------

    def _check_model_overrides(self) -> None:
        """Unknown `model_overrides` keys fail here, before any data is read (their values: when the model is
        built, by `WorldModelConfig`)."""
        overrides = self.model_overrides
        require(isinstance(overrides, dict), self, "model_overrides", "a dict of WorldModelConfig fields")
        nested = nest_encoder_keys(overrides)
        encoder = nested.get("encoder") or {}
        require(isinstance(encoder, dict), self, "model_overrides", "an 'encoder' dict of action-encoder settings")
        known = {f.name for f in fields(WorldModelConfig)}
        unknown = sorted(set(nested) - known) + sorted(f"encoder.{k}" for k in set(encoder) - set(ENCODER_KEYS))
        require(not unknown, self, "model_overrides", f"WorldModelConfig fields (unknown: {unknown})")

    def _check_types(self) -> None:
        hints = typing.get_type_hints(TrainConfig)
        for f in fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ConfigError("TrainConfig", f.name, f"of type {_type_name(hints[f.name])}", value)

    def _check_values(self) -> None:
        require_choice(self, "train_mode", TRAIN_MODES)
        require_choice(self, "mixed_precision", MIXED_PRECISION)
        require_choice(self, "distributed", DISTRIBUTED)
        require_choice(self, "schedule", SCHEDULES)
        require_choice(self, "optimizer_impl", OPTIMIZER_IMPLS)
        require_choice(self, "sdpa_backend", (None, *SDPA_BACKENDS))
        require_choice(self, "conditioning", ("actions", "kvaf", "kvaf+actions"))
        require_choice(self, "kvaf_stage", (1, 2))
        try:
            ClipConfig(**self.clip_settings())  # the clip sampler checks its settings
        except ConfigError as exc:
            raise ConfigError("TrainConfig", exc.field, exc.requirement, exc.value) from None
        require_at_least(self, 1, "steps", "batch_size", "grad_accum", "lora_rank", "keep_last", "log_every")
        require_at_least(self, 0, "state_dim", "warmup_steps", "num_workers", "seed", "checkpoint_every")
        for name in ("lr", "action_lr_mult", "weight_decay", "grad_clip", "min_lr_ratio"):
            v = getattr(self, name)
            require(math.isfinite(v) and v >= 0, self, name, "a finite number >= 0")
        require_positive(self, "lr")
        require_range(self, "min_lr_ratio", 0.0, 1.0)
        require_range(self, "action_dropout", 0.0, 1.0)
        if self.ema_decay is not None:
            require_range(self, "ema_decay", 0.0, 1.0, closed="()")
        require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), self, "betas", "two numbers in [0, 1)"
        )
        require_positive(self, "lora_alpha", optional=True)
        require_at_least(self, 1, "threads", optional=True)
        self._check_model_overrides()
        if not self.out:
            raise ValueError("TrainConfig.out: an output directory is required")
        if self.passive and self.train_mode == "frozen":
            raise ValueError(
                "TrainConfig.passive: the passive stage trains the backbone; train_mode 'frozen' leaves nothing to "
                "train"
            )
        if self.mixed_precision == "fp16" and self.cpu:
            raise ValueError("TrainConfig.mixed_precision: 'fp16' needs a GPU; use 'bf16' or 'no' with cpu=True")
        if self.model not in MODEL_PRESETS and self.model != "tiny":
            raise ValueError(
                f"TrainConfig.model: unknown world-model preset {self.model!r}; available: {', '.join(MODEL_PRESETS)}"
            )

    # -- derived -----------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Frames per training clip (`context + horizon`)."""
        return self.context + self.horizon

    def clip_settings(self) -> dict[str, Any]:
        """The clip-sampler settings (`CLIP_FIELDS`) as `actwm.data.clips.ClipDataset` keyword arguments."""
        return {name: getattr(self, name) for name in CLIP_FIELDS}

    @property
    def effective_action_dropout(self) -> float:
        """The action dropout the loss uses (1 in the passive stage)."""
        return 1.0 if self.passive else self.action_dropout

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys raise a ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}")
        return cls(**d)

    def replace(self, **overrides: Any) -> "TrainConfig":
        """A validated copy with some fields changed."""
        return TrainConfig.from_dict({**asdict(self), **overrides})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """A named preset (`tiny-cpu`, `svd-8gpu`, `cosmos2-2b-8gpu`) with field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown train preset {name!r}; available: {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}")
        return cls(**{**PRESETS[name], **overrides})

    @staticmethod
    def presets() -> list[str]:
        return list(PRESETS)


# EgoWM appendix B settings shared by the 8-GPU presets (the action projection trains at 10x the base lr)
_EGOWM_8GPU: dict[str, Any] = dict(
    steps=50_000,
    batch_size=1,
    grad_accum=4,
    action_lr_mult=10.0,
    weight_decay=0.01,
    warmup_steps=500,
    schedule="constant",
    grad_clip=1.0,
    mixed_precision="bf16",
    context=1,
    target_fps=5.0,
    num_workers=4,
    checkpoint_every=1000,
    keep_last=3,
    log_every=20,
)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-cpu": dict(
        model="wan2.1-tiny",
        steps=300,
        batch_size=4,
        lr=5e-4,
        action_lr_mult=10.0,
        weight_decay=0.0,
        warmup_steps=20,
        schedule="cosine",
        min_lr_ratio=0.1,
        grad_clip=1.0,
        context=1,
        horizon=8,
        size=32,
        checkpoint_every=100,
        keep_last=2,
        log_every=10,
        cpu=True,
    ),
    # EgoWM appendix B: SVD at 1e-5, action projection at 1e-4; 8 future frames, 5 fps, 512 px.
    "svd-8gpu": dict(_EGOWM_8GPU, model="svd", lr=1e-5, horizon=8, size=512, distributed="ddp", ema_decay=0.9999),
    # EgoWM appendix B: Cosmos-Predict2-2B at 1e-6, action projection at 1e-5; 16 frames in one pass.
    "cosmos2-2b-8gpu": dict(_EGOWM_8GPU, model="cosmos2-2b", lr=1e-6, horizon=16, size=480, distributed="fsdp"),
}


# ------------------------------------------------------------------------------------------ helpers


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple or hint is tuple:
        return isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def field_types() -> dict[str, Any]:
    """Field name -> resolved type hint (for the CLI)."""
    return typing.get_type_hints(TrainConfig)


__all__ = ["TrainConfig", "PRESETS", "CLIP_FIELDS", "field_types"]
