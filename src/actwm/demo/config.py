"""The demo's settings: `DemoConfig`, nested by concept (lerobot style), and the precision it resolves to.

`DemoConfig.data` (the simulated dataset), `.model` (the tiny backbone and its action encoder), `.train` (the
three training stages), `.guidance` (classifier-free guidance on actions, for every rollout), `.eval` (held-out
rollouts and their scores), `.plan` (the closed-loop stage). `to_dict()` is the nested JSON of
`DIR/demo_config.json` and metrics.json's "config"; `from_dict()` reads it back (and the flat files written
before the nesting, through `migrate_flat`); `updated({"train": {"scratch": False}})` overrides a few leaves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar, get_type_hints

import torch

from actwm.checks import require, require_at_least, require_choice, require_range
from actwm.planning.loop import PlannerConfig
from actwm.planning.translate import FrameStep

DEFAULT_OUT = "actwm_out/demo"

T = TypeVar("T")


@dataclass(frozen=True)
class DataSettings:
    """The simulated `nav` dataset: `train_episodes` training scenes, `test_episodes` disjoint held-out scenes.

    `frame_step`: the scripted robot's motion per frame (metres, radians); the planner re-times agent actions
    to it.
    """

    size: int = 32
    train_episodes: int = 48
    test_episodes: int = 8
    episode_frames: int = 64
    frame_step: FrameStep = field(default_factory=lambda: FrameStep(0.08, 0.1))
    # Anti-aliased renders (3x3 supersampling): at 32 px, plain renders alias and shimmer as the robot moves,
    # so even the next frame is hard to predict (copying frame 0 scored 14.7 dB at t+1; 17.0 dB supersampled).
    supersample: int = 3


@dataclass(frozen=True)
class EncoderSettings:
    """The action encoder (`ActionEncoderConfig`'s `features`, `hidden_dim`, `max_freq`)."""

    features: str = "sincos"
    hidden_dim: int = 128
    # Sine-cosine action features at angular frequencies 1..max_freq per (normalised) unit; EgoWM-style 100 makes
    # hash-like features of unit-scale actions, 10 varies smoothly over the range the robot covers.
    max_freq: float = 10.0


@dataclass(frozen=True)
class ModelSettings:
    """The tiny backbone: a preset's class with a pixel codec of spatial factor `spatial`, `layers` blocks of
    `heads` attention heads, and its action `encoder`."""

    # Wan 2.1 I2V's channel-concat first frame: lower loss and +0.6 dB over frame-0 replacement (wan2.1-tiny)
    # at equal steps in our runs.
    preset: str = "wan2.1-i2v-tiny"
    spatial: int = 2
    layers: int = 2
    heads: int = 6
    encoder: EncoderSettings = field(default_factory=EncoderSettings)


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser: base learning rate, and the action encoder's at `action_lr_mult` times it."""

    lr: float = 1e-3
    # EgoWM trains the action module at 10x a 1e-5 base lr. At this demo's 1e-3 base lr, 10x (1e-2) collapsed
    # the tiny encoder to a constant (embedding std across actions -> 0, no action effect); 3x did not.
    action_lr_mult: float = 3.0


@dataclass(frozen=True)
class TrainSettings:
    """The training stages: passive, then action (EgoWM); `scratch` adds actions-from-step-0 for the same total
    steps. `horizon`: future frames per training clip (the model's generation window is 1 + horizon)."""

    passive_steps: int = 600
    action_steps: int = 3200
    scratch: bool = True
    batch_size: int = 8
    optim: OptimSettings = field(default_factory=OptimSettings)
    # Flow-matching training times ~ sigmoid(N(logit_mean, 1)). Actions decide the coarse layout, which is set at
    # high noise: logit_mean 1.5 (mostly t > 0.5) made the tiny model pick up actions at all; 2.0 widened the
    # gap further (2.5 did not).
    logit_mean: float = 2.0
    # 10% of action-stage clips train with the action embedding zeroed (the passive stage's input), so the model
    # keeps the action-free prediction that classifier-free guidance on actions extrapolates away from.
    action_dropout: float = 0.1
    # "auto": bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX; about 15% faster training
    # here, same gap), float32 elsewhere (emulated bf16 would be slower); or "bf16" / "no".
    mixed_precision: str = "auto"
    # torch.compile (inductor) for the action and from-scratch stages, fused AdamW in every stage: 1.33-1.42x per
    # step in fp32, 1.43x in bf16, same loss curve to float rounding (benchmarks/train_step.py). The passive stage
    # stays eager: its 600 steps save less than a cold compile costs (about 65 CPU-seconds). Without a C++
    # compiler the stages warn once and train eagerly.
    compile: bool = True
    # The Wan adapter's fast paths in training too (`TrainConfig.fast_paths`: one-key cross-attention, one
    # modulation row per latent frame, token-major patch embedding): 1.2-1.3x per step on top of compile + fused
    # (CPU time, bf16 and fp32), loss curve unchanged to rounding (benchmarks/train_step.py).
    fast_paths: bool = True
    horizon: int = 8

    def __post_init__(self) -> None:
        require_choice(self, "mixed_precision", ("auto", "bf16", "no"))
        require_range(self, "action_dropout", 0.0, 1.0, closed="[)")
        require_at_least(self, 1, "passive_steps", "action_steps", "batch_size", "horizon")


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance on actions: `uncond + scale * (cond - uncond)` at flow times t in `interval`
    (where the layout forms), in every rollout (held-out clips and imagined plans); metrics.json also reports
    scale 1 (no guidance)."""

    scale: float = 2.0
    interval: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        lo, hi = self.interval
        require(0.0 <= lo < hi, self, "interval", "(lo, hi) with 0 <= lo < hi")
        require_at_least(self, 1.0, "scale")  # 1 = no guidance


@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation: up to `clips` clips of `frames` frames rolled out with `sample_steps` Euler steps,
    scored at `horizons` (PSNR, SSIM, and SCS when `scs`)."""

    frames: int = 17
    clips: int = 24
    sample_steps: int = 10
    horizons: tuple[int, ...] = (2, 4, 8, 16)
    scs: bool = True

    def __post_init__(self) -> None:
        require_at_least(self, 2, "frames")
        require(max(self.horizons) < self.frames, self, "horizons", f"at most frames - 1 = {self.frames - 1}")


@dataclass(frozen=True)
class PlanSettings:
    """The closed-loop stage (`actwm.demo.planning_stage`; `enabled=False` / `--no-plan` skips it): `episodes`
    ImageNav episodes of at most `budget` actions on planning scenes, goals `forward_range` forward steps away
    within `view_turns` turns; `planner`: M base-policy proposals of L actions imagined per decision (with
    `rollout_steps` denoising steps), k executed; SR against M at `sweep`; the stop threshold calibrated on
    `calib_scenes` training scenes."""

    enabled: bool = True
    episodes: int = 16
    budget: int = 24
    # Short-range ImageNav at 32 px: goals 0.5-1 m straight ahead (2-4 forward steps), any final heading. With
    # the task's default 1-3 m within 3 turns, no agent (the oracle included) succeeded at this size in our runs.
    forward_range: tuple[int, int] = (2, 4)
    view_turns: int = 0
    # Imagination revises, not replaces, the base policy: its own plan is kept unless an imagined alternative
    # scores more than `base_margin` (SSIM) above it, and the base agent's stop rule fires with a world model too.
    # Margin chosen on the dev episode set (seed 1, n = 16) with the demo model: SR 0.06 (margin 0 / 0.03), 0.19
    # (margin 0.1), 0.19 (stop rule alone), 0.25 (both).
    planner: PlannerConfig = field(
        default_factory=lambda: PlannerConfig(4, 2, 2, base_margin=0.1, always_stop_rule=True)
    )
    rollout_steps: int = 4
    sweep: tuple[int, ...] = (1, 2, 4)
    calib_scenes: int = 12
    # The no-model and oracle agents run in a second process (worth it when the episodes outweigh its ~10 s start).
    parallel: bool = True

    def __post_init__(self) -> None:
        require_at_least(self, 1, "episodes", "budget", "calib_scenes", "rollout_steps")
        require(bool(self.sweep) and min(self.sweep) >= 1, self, "sweep", "M values >= 1")


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo (defaults fit 15 minutes on 2 CPU cores; `quick()` about 3)."""

    out: str = DEFAULT_OUT
    seed: int = 0
    threads: int = 1
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    guidance: Guidance = field(default_factory=Guidance)
    eval: EvalSettings = field(default_factory=EvalSettings)
    plan: PlanSettings = field(default_factory=PlanSettings)

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """The smoke-run sizes (`actwm demo --quick`), then `overrides` (nested dicts per group, as `updated`)."""
        return cls().updated(QUICK).updated(overrides)

    def __post_init__(self) -> None:
        frames = self.eval.frames
        require(self.data.episode_frames >= frames, self.data, "episode_frames", f">= eval.frames = {frames}")
        guided = self.guidance.scale > 1.0  # guidance extrapolates from the action-free prediction dropout trains
        require(
            not guided or self.train.action_dropout > 0, self.train, "action_dropout", "> 0 when guidance.scale > 1"
        )

    def to_dict(self) -> dict[str, Any]:
        """The nested settings as JSON types (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DemoConfig:
        """`to_dict()`'s inverse; a flat dict (the format before the nesting) is migrated first. Missing keys
        keep `DemoConfig()`'s values; an unknown key raises `ValueError` naming it."""
        if not any(isinstance(v, dict) for v in raw.values()):
            raw = migrate_flat(raw)
        return _build(cls, _merge(cls().to_dict(), raw), "")

    def updated(self, overrides: dict[str, Any]) -> DemoConfig:
        """A copy with the leaves of the nested dict `overrides` replaced (e.g. `{"plan": {"episodes": 4}}`)."""
        return _build(DemoConfig, _merge(self.to_dict(), overrides), "")


#: `DemoConfig.quick()`: every stage at smoke-run size.
QUICK: dict[str, Any] = {
    "data": {"train_episodes": 12, "test_episodes": 3, "episode_frames": 40},
    # 160 eager steps: about 35 s here, and the whole smoke run under 3 minutes on a 2-core AVX2 laptop CPU, whose
    # steps take about 2.4x as long (fp32); compiling would not pay back at this length
    "train": {"passive_steps": 60, "action_steps": 100, "scratch": False, "compile": False},
    "eval": {"clips": 6, "sample_steps": 6},
    "plan": {
        "episodes": 2,
        "budget": 6,
        "planner": {"proposals": 2},
        "rollout_steps": 2,
        "sweep": (1, 2),
        "calib_scenes": 2,
        "parallel": False,
    },
}

#: The flat `demo_config.json` keys (before the nesting) -> their path in the nested config.
FLAT_KEYS: dict[str, tuple[str, ...]] = {
    **{k: (k,) for k in ("out", "seed", "threads")},
    **{k: ("data", k) for k in ("size", "train_episodes", "test_episodes", "episode_frames", "supersample")},
    "robot_speed": ("data", "frame_step", "translation"),
    "robot_turn_rate": ("data", "frame_step", "rotation"),
    "model": ("model", "preset"),
    **{k: ("model", k) for k in ("spatial", "layers", "heads")},
    **{k: ("model", "encoder", k) for k in ("features", "hidden_dim", "max_freq")},
    **{k: ("train", k) for k in ("passive_steps", "action_steps", "scratch", "batch_size", "horizon")},
    **{k: ("train", k) for k in ("logit_mean", "action_dropout", "mixed_precision", "compile")},
    **{k: ("train", "optim", k) for k in ("lr", "action_lr_mult")},
    "guidance": ("guidance", "scale"),
    "guidance_interval": ("guidance", "interval"),
    **{f"eval_{k}": ("eval", k) for k in ("frames", "clips")},
    **{k: ("eval", k) for k in ("sample_steps", "horizons", "scs")},
    "plan": ("plan", "enabled"),
    "plan_steps": ("plan", "rollout_steps"),
    **{f"plan_{k}": ("plan", "planner", k) for k in ("proposals", "horizon", "execute")},
    **{
        f"plan_{k}": ("plan", k)
        for k in ("episodes", "budget", "forward_range", "view_turns", "sweep", "calib_scenes", "parallel")
    },
}


def migrate_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat (pre-nesting) `demo_config.json` dict -> the nested dict `DemoConfig.from_dict` reads."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in FLAT_KEYS:
            raise ValueError(f"DemoConfig: unknown setting {key!r} in a flat (pre-nesting) demo config")
        *groups, leaf = FLAT_KEYS[key]
        node = nested
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return nested


def _build(cls: type[T], raw: dict[str, Any], path: str) -> T:
    """`cls(**raw)` with nested dataclass fields built from their dicts and JSON lists back to tuples."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.init}
    for key in raw:
        if key not in names:
            raise ValueError(f"DemoConfig: unknown setting {path + key!r}")
    kwargs = {}
    for key, value in raw.items():
        if is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"DemoConfig: setting {path + key!r} must be a dict of settings, got {value!r}")
            value = _build(hints[key], value, f"{path}{key}.")
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied leaf by leaf (dicts merge, anything else replaces)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def resolve_precision(setting: str) -> str:
    """`auto` -> "bf16" on a CPU with native bf16 matmuls (AVX512-BF16 or AMX) that torch's kernels may use, else
    "no". Kernels limited to AVX2 (`ATEN_CPU_CAPABILITY=avx2`, as on most laptops) have no bf16 units: fp32."""
    if setting != "auto":
        return setting
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # private helpers; assume no native bf16 if a torch build lacks them
        native = False
    native = native and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return "bf16" if native else "no"
