"""Rollouts: imagine the future of a start frame under an action sequence.

Raw actions follow the dataset convention (`actwm data`): row t takes frame t to frame t+1, in the
action space's units (for `nav3`: metres and radians in the robot frame of frame t); the last row may be
zeros. `rollout` converts them to what the model was trained on (`delta` or `cumulative`, normalised),
generates chunks of the model's window, and for horizons longer than the window continues
autoregressively: each chunk starts from the last generated frame, with actions re-expressed relative to
that frame. Many candidate action sequences for one start frame run as one batch (planners need it);
each candidate's noise comes from its own seed, so a batch equals its candidates run one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from actwm.actions import ActionNormaliser, transform_actions
from actwm.checks import require, require_at_least
from actwm.models.compiling import compile_in_place
from actwm.models.conditioning import Conditioning
from actwm.models.kvaf import KVAF, kvaf_branch_for, numeric_inputs
from actwm.models.world_model import WorldModel


@dataclass
class RolloutConfig:
    """Sampling settings. `window`: pixel frames per chunk (default: the model's training clip length). `compile`:
    `torch.compile` the model's backbone in place before sampling (inductor; the model stays compiled for later
    calls): the first rollout pays the compilation, later ones run faster (same outputs to float rounding); without
    a C++ compiler on CPU it warns and samples eagerly."""

    steps: int = 20
    sampler: str = "euler"
    guidance: float = 1.0
    guidance_interval: tuple[float, float] | None = None  # guide only at noise levels in (lo, hi]
    window: int | None = None
    seed: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        require(math.isfinite(self.guidance), self, "guidance", "a finite number")
        interval = self.guidance_interval
        if interval is not None:
            require(all(math.isfinite(v) for v in interval), self, "guidance_interval", "two finite numbers")
            require(interval[0] < interval[1], self, "guidance_interval", "(lo, hi) with lo < hi")
        require_at_least(self, 1, "steps")
        require_at_least(self, 2, "window", optional=True)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a result's fingerprint records: steps, sampler, guidance and window, and `guidance_interval`
        and `compile` only when set (so the fingerprints of runs without them stay as they were). The seed is the
        runner's, recorded apart."""
        out = {"steps": self.steps, "sampler": self.sampler, "guidance": self.guidance, "window": self.window}
        if self.guidance_interval is not None:
            out["guidance_interval"] = list(self.guidance_interval)
        return {**out, "compile": True} if self.compile else out


def model_window(wm: WorldModel, window: int | None = None) -> int:
    """Pixel frames one chunk generates: `1 + k*n` (k = the codec's temporal compression)."""
    k = wm.encoder.cfg.temporal_compression
    w = window or wm.config.clip_frames or max(1 + 2 * k, 9)
    if (w - 1) % k:
        raise ValueError(f"window of {w} frames is not 1 + {k}*n for this model (temporal compression k={k})")
    return w


def to_model_actions(wm: WorldModel, raw: torch.Tensor, normaliser: ActionNormaliser | None = None) -> torch.Tensor:
    """Raw per-step actions `(batch, frames, D)` -> normalised model actions `(batch, frames, D)` float32.

    Converts to the normaliser's convention relative to the first frame (SE(2) composition for nav3) and
    normalises, in torch on `raw`'s device (no host round trip). `normaliser`: default the `std` normaliser of
    the model's `action_space` statistics in the model's `action_mode`.
    """
    wm.action_space.validate(raw, "raw actions")
    norm = normaliser or ActionNormaliser.from_action_space(wm.action_space, wm.config.action_mode)
    valid = torch.ones(raw.shape[:2] + (1,), dtype=torch.bool, device=raw.device)
    converted = transform_actions(raw[:, :, None, :], valid, wm.action_space.name, norm.convention)
    return norm.normalise(converted.to(torch.float32))  # float32 normalisation, as before


def _chunk_bounds(total: int, window: int, k: int) -> list[tuple[int, int, int]]:
    """[(start, length_generated, length_kept)]: chunks of `window` frames sharing their first frame."""
    bounds, start = [], 0
    while start < total - 1:
        remaining = total - start  # frames still to cover, counting the chunk's first frame
        keep = min(window, remaining)
        length = min(window, 1 + k * -(-(keep - 1) // k))  # round up to 1 + k*n
        bounds.append((start, length, keep))
        start += keep - 1
    return bounds


@torch.no_grad()
def rollout(
    wm: WorldModel,
    first_frame: torch.Tensor,
    raw_actions: torch.Tensor,
    state: torch.Tensor | None = None,
    cfg: RolloutConfig | None = None,
    seeds: list[int] | None = None,
    progress: bool = False,
    kvaf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate `frames` frames for each action sequence.

    Args:
        first_frame: `(1 or batch, 3, H, W)` start frame(s) in [-1, 1]; one frame is shared by all candidates.
        raw_actions: `(batch, frames, D)` raw per-step actions (see module docstring).
        state: `(batch, S)` initial state, if the model has a state embedding.
        seeds: one seed per sequence (default `cfg.seed + i`).
        kvaf: `(batch, frames, 3, H, W)` in [-1, 1]: the KVAF video of the commanded motion, for a KVAF model (render
            it from the actions with `actwm.rollout.kvaf.kvaf_video`; a user never draws one).
    Returns:
        `(batch, frames, 3, H, W)` in [-1, 1]; frame 0 is the start frame.
    """
    cfg = cfg or RolloutConfig()
    _check_inputs(wm, first_frame, raw_actions, kvaf)
    if cfg.compile:
        compile_in_place(wm.adapter.backbone, "RolloutConfig.compile: sampling", first_frame.device)
    b, total = raw_actions.shape[:2]
    frame = first_frame.expand(b, -1, -1, -1)
    seeds = [cfg.seed + i for i in range(b)] if seeds is None else list(seeds)
    k = wm.encoder.cfg.temporal_compression
    chunks = _chunk_bounds(total, model_window(wm, cfg.window), k)
    out = [frame.unsqueeze(1)]
    for c, (start, length, keep) in enumerate(tqdm(chunks, desc="rollout chunks", disable=not progress)):
        raw = raw_actions[:, start : start + length]
        if raw.shape[1] < length:  # past the end: stand still
            raw = torch.cat([raw, raw.new_zeros(b, length - raw.shape[1], raw.shape[2])], dim=1)
        model_actions = to_model_actions(wm, raw)
        extra = _kvaf_conditioning(wm, model_actions, kvaf, start, length, [s + 7919 * c for s in seeds])
        video = wm.generate(
            frame,
            model_actions,
            state,
            steps=cfg.steps,
            sampler=cfg.sampler,
            seeds=[s + 7919 * c for s in seeds],
            guidance=cfg.guidance,
            guidance_interval=cfg.guidance_interval,
            conditioning=extra,
        )
        out.append(video[:, 1:keep])
        frame = video[:, keep - 1]
    return torch.cat(out, dim=1)


def _check_inputs(
    wm: WorldModel, first_frame: torch.Tensor, raw_actions: torch.Tensor, kvaf: torch.Tensor | None
) -> None:
    """Raise ValueError unless the start frame(s), raw actions and (for a KVAF model) the KVAF video fit `wm`."""
    if raw_actions.ndim != 3:
        raise ValueError(f"actions must be (batch, frames, D), got shape {tuple(raw_actions.shape)}")
    b, total = raw_actions.shape[:2]
    if total < 2:
        raise ValueError(f"actions must cover at least 2 frames, got {total}")
    check_raw_actions(wm, raw_actions)
    if first_frame.ndim != 4 or first_frame.shape[0] not in (1, b):
        raise ValueError(f"first frame must be (1 or {b}, 3, H, W), got shape {tuple(first_frame.shape)}")
    check_image_size(wm, first_frame.shape[-2], first_frame.shape[-1])
    needs_kvaf = wm.kvaf is not None and wm.kvaf.numeric is None  # (the numeric ablation streams the actions)
    if needs_kvaf != (kvaf is not None) or (kvaf is not None and kvaf.shape[:2] != raw_actions.shape[:2]):
        raise ValueError(
            "a KVAF world model needs the KVAF video of the actions, (batch, frames, 3, H, W) (actwm.rollout.kvaf), "
            "and only a KVAF model takes one"
        )


def _kvaf_conditioning(
    wm: WorldModel, model_actions: torch.Tensor, kvaf: torch.Tensor | None, start: int, length: int, seeds: list[int]
) -> Conditioning | None:
    """The KVAF branch of one chunk: the numeric-stream ablation's actions, or frames `[start, start + length)` of
    the KVAF video `(b, T, 3, H, W)` (past the end the arm stays where it is); None for other models."""
    if wm.kvaf is not None and wm.kvaf.numeric is not None:
        return Conditioning({KVAF: numeric_inputs(wm.kvaf, model_actions)})
    if kvaf is None:
        return None
    part = kvaf[:, start : start + length]
    part = torch.cat([part] + [part[:, -1:]] * (length - part.shape[1]), dim=1)
    return Conditioning({KVAF: kvaf_branch_for(wm, part, seeds)})


MAX_NORMALISED_ACTION = 1e4  # far outside any normalised training range; beyond it frames are garbage (1e30 -> black)


def check_raw_actions(wm: WorldModel, raw: torch.Tensor) -> None:
    """Raise ValueError for NaN/inf raw actions or ones whose normalised size is absurd (e.g. 1e30)."""
    if not torch.isfinite(raw).all():
        raise ValueError("actions contain NaN or inf")
    scaled = wm.action_space.normalise(raw.float()).abs().max()
    if not torch.isfinite(scaled) or float(scaled) > MAX_NORMALISED_ACTION:
        raise ValueError(
            f"actions are out of range: after normalisation by the model's action space their largest magnitude is "
            f"{float(scaled):.3g} (limit {MAX_NORMALISED_ACTION:g}); check their units"
        )


def check_image_size(wm: WorldModel, height: int, width: int) -> None:
    """Raise ValueError when a start frame's size does not fit the model."""
    if wm.config.image_size is not None and [height, width] != list(wm.config.image_size):
        raise ValueError(
            f"start frame is {height}x{width} pixels but the model was trained at "
            f"{wm.config.image_size[0]}x{wm.config.image_size[1]}; resize it first"
        )
    s = wm.codec.spatial_compression if wm.codec is not None else 1
    if height % s or width % s:
        raise ValueError(f"start frame is {height}x{width}; height and width must be multiples of {s}")
