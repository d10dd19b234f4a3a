"""What every backbone adapter shares: its stated assumptions and the injection mechanism.

An adapter wraps one diffusers backbone without editing it. It registers forward hooks at the
backbone's timestep-embedding sites; while `inject(emb)` is active, the hooks add the per-frame action
embedding `emb` `(batch, latent_frames, emb_dim)` to the timestep embedding, so every modulation site
computes `F_i(Z_t + Z_a)` (EgoWM Eq. 5). Outside `inject`, the backbone is untouched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

Condition = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    """The assumptions an adapter makes about its backbone, stated once.

    Attributes:
        family: "svd", "cosmos" or "wan".
        latent_channels: channels of one latent frame (what the codec produces).
        spatial_compression: pixels per latent pixel along each side.
        temporal_compression: k; pixel frames `1 + k*n` <-> latent frames `1 + n`.
        first_frame: how the first frame conditions generation.
        objective: "edm" (EDM-preconditioned v-prediction denoising) or "flow" (rectified-flow velocity).
        emb_dim: size of the timestep embedding where actions are added.
        injection_sites: human-readable list of where the embedding enters.
    """

    family: str
    latent_channels: int
    spatial_compression: int
    temporal_compression: int
    first_frame: str
    objective: str
    emb_dim: int
    injection_sites: str


class BackboneAdapter(nn.Module):
    """Base class: holds the backbone, the hook handles and the active embedding."""

    family: str = ""
    objective: str = ""
    replaces_first_frame: bool = False  # True: latent frame 0 is the clean condition, not generated

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self._emb: torch.Tensor | None = None
        self._handles: list[Any] = []
        self._register_hooks()

    # -- to implement ---------------------------------------------------------------------------
    def _register_hooks(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def emb_dim(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def spec(self, codec: nn.Module) -> BackboneSpec:  # pragma: no cover - interface
        raise NotImplementedError

    def condition(self, first_frame: torch.Tensor, first_latent: torch.Tensor) -> Condition:  # pragma: no cover
        """Build the conditioning once per start frame.

        Args:
            first_frame: `(batch, 3, height, width)` pixels in [-1, 1].
            first_latent: `(batch, channels, h, w)` the codec's latent of that frame.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:  # pragma: no cover
        """Run the backbone.

        Args:
            x: `(batch, latent_frames, channels, h, w)` network input of the objective.
            t: `(batch,)` noise level in the objective's units (EDM sigma, or flow time in [0, 1]).
            cond: from `condition`.
        Returns:
            `(batch, latent_frames, channels, h, w)` raw network output.
        """
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def inject(self, emb: torch.Tensor | None) -> Iterator[None]:
        """Within the block, hooks add `emb` `(batch, latent_frames, emb_dim)` to the timestep embedding."""
        previous, self._emb = self._emb, emb
        try:
            yield
        finally:
            self._emb = previous

    def _hook(self, module: nn.Module, fn: Any, *, pre: bool = False) -> None:
        if pre:
            self._handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
        else:
            self._handles.append(module.register_forward_hook(fn))

    @staticmethod
    def check_latents(x: torch.Tensor, emb: torch.Tensor | None, what: str = "latents") -> None:
        if x.ndim != 5:
            raise ValueError(f"{what} must be (batch, latent_frames, channels, h, w), got shape {tuple(x.shape)}")
        if emb is not None and (emb.shape[0] != x.shape[0] or emb.shape[1] != x.shape[1]):
            raise ValueError(
                f"actions and latents disagree: actions give {emb.shape[1]} latent frames for batch {emb.shape[0]}, "
                f"latents have {x.shape[1]} frames for batch {x.shape[0]}"
            )
