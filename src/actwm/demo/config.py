"""The demo's settings: `DemoConfig` (sizes, budgets, sampling) and the precision it resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from actwm.checks import require, require_at_least, require_choice, require_range

DEFAULT_OUT = "actwm_out/demo"


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo (defaults fit 15 minutes on 2 CPU cores; `quick()` about 3)."""

    out: str = DEFAULT_OUT
    size: int = 32
    train_episodes: int = 48
    test_episodes: int = 8
    episode_frames: int = 64
    robot_speed: float = 0.08
    robot_turn_rate: float = 0.1
    # Anti-aliased renders (3x3 supersampling): at 32 px, plain renders alias and shimmer as the robot moves,
    # so even the next frame is hard to predict (copying frame 0 scored 14.7 dB at t+1; 17.0 dB supersampled).
    supersample: int = 3
    # Wan 2.1 I2V's channel-concat first frame: lower loss and +0.6 dB over frame-0 replacement (wan2.1-tiny)
    # at equal steps in our runs.
    model: str = "wan2.1-i2v-tiny"
    spatial: int = 2
    layers: int = 2
    heads: int = 6
    features: str = "sincos"
    hidden_dim: int = 128
    # Sine-cosine action features at angular frequencies 1..max_freq per (normalised) unit; EgoWM-style 100 makes
    # hash-like features of unit-scale actions, 10 varies smoothly over the range the robot covers.
    max_freq: float = 10.0
    passive_steps: int = 600
    action_steps: int = 3200
    scratch: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    # EgoWM trains the action module at 10x a 1e-5 base lr. At this demo's 1e-3 base lr, 10x (1e-2) collapsed
    # the tiny encoder to a constant (embedding std across actions -> 0, no action effect); 3x did not.
    action_lr_mult: float = 3.0
    # Flow-matching training times ~ sigmoid(N(logit_mean, 1)). Actions decide the coarse layout, which is set at
    # high noise: logit_mean 1.5 (mostly t > 0.5) made the tiny model pick up actions at all; 2.0 widened the
    # gap further (2.5 did not).
    logit_mean: float = 2.0
    # 10% of action-stage clips train with the action embedding zeroed (the passive stage's input), so the model
    # keeps the action-free prediction that classifier-free guidance on actions extrapolates away from.
    action_dropout: float = 0.1
    # Rollouts use `uncond + guidance * (cond - uncond)` on actions at flow times t in `guidance_interval`
    # (where the layout forms); metrics.json also reports guidance 1.
    guidance: float = 2.0
    guidance_interval: tuple[float, float] = (0.3, 1.0)
    # "auto": bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX; about 15% faster training
    # here, same gap), float32 elsewhere (emulated bf16 would be slower); or "bf16" / "no".
    mixed_precision: str = "auto"
    # torch.compile (inductor) for the action and from-scratch stages, fused AdamW in every stage: 1.33-1.42x per
    # step in fp32, 1.43x in bf16, same loss curve to float rounding (benchmarks/train_step.py). The passive stage
    # stays eager: its 600 steps save less than a cold compile costs (about 65 CPU-seconds). Without a C++
    # compiler the stages warn once and train eagerly.
    compile: bool = True
    horizon: int = 8
    eval_frames: int = 17
    eval_clips: int = 24
    sample_steps: int = 10
    horizons: tuple[int, ...] = (2, 4, 8, 16)
    scs: bool = True
    seed: int = 0
    threads: int = 1
    # Closed-loop stage (`actwm.demo.planning_stage`): ImageNav episodes on planning scenes, M base-policy
    # proposals of L actions imagined per decision, k executed; SR against M at `plan_sweep`.
    plan: bool = True
    plan_episodes: int = 16
    plan_proposals: int = 4
    plan_horizon: int = 2
    plan_execute: int = 2
    plan_budget: int = 24
    plan_steps: int = 4
    plan_sweep: tuple[int, ...] = (1, 2, 4)
    plan_calib_scenes: int = 12
    # Short-range ImageNav at 32 px: goals 0.5-1 m straight ahead (2-4 forward steps), any final heading. With
    # the task's default 1-3 m within 3 turns, no agent (the oracle included) succeeded at this size in our runs.
    plan_forward_range: tuple[int, int] = (2, 4)
    plan_view_turns: int = 0
    # The no-model and oracle agents run in a second process (worth it when the episodes outweigh its ~10 s start).
    plan_parallel: bool = True

    @classmethod
    def quick(cls, **kw: Any) -> "DemoConfig":
        base = dict(
            train_episodes=12,
            test_episodes=3,
            episode_frames=40,
            passive_steps=150,
            action_steps=250,
            scratch=False,
            compile=False,  # a 250-step stage does not repay the compile
            eval_clips=6,
            sample_steps=6,
            plan_episodes=2,
            plan_proposals=2,
            plan_budget=6,
            plan_steps=2,
            plan_sweep=(1, 2),
            plan_calib_scenes=2,
            plan_parallel=False,
        )
        return cls(**{**base, **kw})

    def __post_init__(self) -> None:
        require_at_least(self, 2, "eval_frames")
        require(self.episode_frames >= self.eval_frames, self, "episode_frames", f">= eval_frames = {self.eval_frames}")
        require(
            max(self.horizons) < self.eval_frames, self, "horizons", f"at most eval_frames - 1 = {self.eval_frames - 1}"
        )
        require_choice(self, "mixed_precision", ("auto", "bf16", "no"))
        lo, hi = self.guidance_interval
        require(0.0 <= lo < hi, self, "guidance_interval", "(lo, hi) with 0 <= lo < hi")
        require_at_least(self, 1.0, "guidance")  # 1 = no guidance
        require_range(self, "action_dropout", 0.0, 1.0, closed="[)")
        if self.guidance > 1.0 and self.action_dropout == 0.0:
            raise ValueError(
                "DemoConfig.guidance > 1 needs action_dropout > 0 (the action-free prediction it extrapolates from)"
            )


def resolve_precision(setting: str) -> str:
    """`auto` -> "bf16" on a CPU with native bf16 matmuls (AVX512-BF16 or AMX), else "no"."""
    if setting != "auto":
        return setting
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # private helpers; assume no native bf16 if a torch build lacks them
        native = False
    return "bf16" if native else "no"
