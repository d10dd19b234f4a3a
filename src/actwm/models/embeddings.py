"""Action and state embeddings shared by every backbone (EgoWM section 3.2, Eq. 5-6).

An `ActionEncoder` maps a per-frame action sequence `(batch, frames, dim)` to per-latent-frame
embeddings `(batch, latent_frames, emb_dim)` that the backbone adapter adds to its timestep
embedding at every modulation site. Two feature variants, as in the paper:

- ``"sincos"`` (the SVD variant): each action scalar becomes `num_freqs` sine and cosine features,
  concatenated over the `dim` scalars, then an MLP.
- ``"mlp"`` (the Cosmos variant): the raw action vector goes straight into a (wider) MLP.

When the backbone's VAE compresses time by `k > 1`, pixel frames `1 + k*n` become latent frames
`1 + n` through 1D convolutions with stride `k`: the sequence is front-padded with `k - 1` copies of
frame 0, so frame 0 maps alone to latent frame 0 and each later latent frame covers `k` pixel frames
(the same causal grouping as the Wan VAE). The final linear layer starts at zero, so a freshly wrapped
backbone is bit-identical to the pretrained one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from actwm.checks import require_at_least, require_choice, require_positive


@dataclass
class ActionEncoderConfig:
    """Configuration of an `ActionEncoder`.

    Attributes:
        action_dim: D, the size of one action vector.
        emb_dim: size of the backbone's timestep embedding at the injection site.
        features: "sincos" (per-scalar sinusoids + MLP) or "mlp" (raw actions + MLP).
        num_freqs: sinusoid frequencies per scalar (features = 2 * num_freqs per scalar).
        max_freq: highest angular frequency for normalised actions (frequencies are geometric from 1).
        hidden_dim: MLP width.
        temporal_compression: k of the backbone's VAE; k > 1 adds the 1D-conv downsampling.
        state_dim: S of the optional initial-state embedding (Eq. 6); 0 disables it.
    """

    action_dim: int
    emb_dim: int
    features: str = "sincos"
    num_freqs: int = 16
    max_freq: float = 100.0
    hidden_dim: int = 256
    temporal_compression: int = 1
    state_dim: int = 0

    def __post_init__(self) -> None:
        require_at_least(self, 1, "action_dim", "emb_dim", "hidden_dim", "temporal_compression", "num_freqs")
        require_choice(self, "features", ("sincos", "mlp"))
        require_at_least(self, 0, "state_dim")
        require_positive(self, "max_freq")

    def to_dict(self) -> dict:
        return asdict(self)


class SinCosFeatures(nn.Module):
    """`(..., dim)` scalars -> `(..., dim * 2 * num_freqs)` sine-cosine features (fixed, no weights)."""

    def __init__(self, num_freqs: int, max_freq: float) -> None:
        super().__init__()
        exps = torch.linspace(0.0, 1.0, num_freqs) if num_freqs > 1 else torch.zeros(1)
        self.register_buffer("freqs", max_freq**exps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x.unsqueeze(-1) * self.freqs.to(x.dtype)  # (..., dim, num_freqs)
        feats = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return rearrange(feats, "... d f -> ... (d f)")


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())


class _VectorEmbed(nn.Module):
    """Features + MLP for one vector per position: `(..., dim)` -> `(..., hidden)`."""

    def __init__(self, dim: int, cfg: ActionEncoderConfig) -> None:
        super().__init__()
        if cfg.features == "sincos":
            self.features: nn.Module = SinCosFeatures(cfg.num_freqs, cfg.max_freq)
            in_dim = dim * 2 * cfg.num_freqs
        else:
            self.features = nn.Identity()
            in_dim = dim
        self.mlp = _mlp(in_dim, cfg.hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(x))


class ActionEncoder(nn.Module):
    """Per-frame action (and optional initial-state) embedding.

    forward(actions `(batch, frames, action_dim)`, state `(batch, state_dim)` or None)
        -> `(batch, latent_frames, emb_dim)` with `latent_frames = 1 + (frames - 1) // k`.
    """

    def __init__(self, cfg: ActionEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, h = cfg.temporal_compression, cfg.hidden_dim
        self.action_embed = _VectorEmbed(cfg.action_dim, cfg)
        self.downsample = (
            nn.Sequential(
                nn.Conv1d(h, h, kernel_size=k, stride=k), nn.SiLU(), nn.Conv1d(h, h, kernel_size=1), nn.SiLU()
            )
            if k > 1
            else None
        )
        self.state_embed = _VectorEmbed(cfg.state_dim, cfg) if cfg.state_dim > 0 else None
        self.out = nn.Linear(h, cfg.emb_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def latent_frames(self, frames: int) -> int:
        """Number of latent frames for `frames` pixel frames; raises unless `frames == 1 + k*n`."""
        k = self.cfg.temporal_compression
        if frames < 1 or (frames - 1) % k:
            raise ValueError(
                f"actions have {frames} frames, but this backbone's VAE compresses time by k={k}: "
                f"the frame count must be 1 + {k}*n (e.g. {', '.join(str(1 + k * n) for n in range(1, 4))})"
            )
        return 1 + (frames - 1) // k

    def forward(self, actions: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        if actions.ndim != 3:
            raise ValueError(f"actions must be (batch, frames, action_dim), got shape {tuple(actions.shape)}")
        if actions.shape[-1] != self.cfg.action_dim:
            raise ValueError(
                f"actions have dimension {actions.shape[-1]} but the action encoder expects {self.cfg.action_dim}"
            )
        if not torch.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf values")
        self.latent_frames(actions.shape[1])
        dtype = self.out.weight.dtype
        h = self.action_embed(actions.to(dtype))  # (b, t, hidden)
        if self.downsample is not None:
            k = self.cfg.temporal_compression
            h = torch.cat([repeat(h[:, :1], "b 1 c -> b r c", r=k - 1), h], dim=1)
            h = rearrange(self.downsample(rearrange(h, "b t c -> b c t")), "b c t -> b t c")
        if self.state_embed is not None:
            if state is None:
                raise ValueError(
                    f"this model was built with a state embedding (state_dim={self.cfg.state_dim}); pass state"
                )
            if state.ndim != 2 or state.shape[-1] != self.cfg.state_dim:
                raise ValueError(f"state must be (batch, {self.cfg.state_dim}), got shape {tuple(state.shape)}")
            if not torch.isfinite(state).all():
                raise ValueError("state contains NaN or inf values")
            h = h + self.state_embed(state.to(dtype)).unsqueeze(1)
        elif state is not None:
            raise ValueError("state was given but this model has no state embedding (state_dim=0)")
        return self.out(h)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(frames: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """`(b, 3, H, W)` frames in [-1, 1] -> `(b, 3, size, size)` CLIP image-encoder input (bicubic resize and
    CLIP's mean/std, as `CLIPImageProcessor` does), for the image embeddings SVD and Wan I2V condition on."""
    x = torch.nn.functional.interpolate((frames + 1) / 2, size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return ((x.clamp(0, 1) - mean) / std).to(dtype)
