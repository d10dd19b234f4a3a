"""What every backbone adapter shares: its stated assumptions and the injection mechanism.

An adapter wraps one diffusers backbone without editing it. It declares its named injection sites
(`declare_sites`: module path + what to add to there); the base class registers one generic hook per site.
While `conditioned(conditioning)` is active, each hook adds the sum of the active branches' per-frame
contributions `(batch, latent_frames, emb_dim)` (see `actwm.models.conditioning`), laid out for that site by the
adapter's `layout`, to the timestep embedding, so every modulation site computes `F_i(Z_t + Z_a)` (EgoWM Eq. 5).
Outside `conditioned`, or with no branch, the backbone is untouched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from actwm.models.conditioning import Conditioning, FrameCondition, InjectionSite

Condition = FrameCondition  # the old name of the first-frame conditioning


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


def _submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path) if path else root


class BackboneAdapter(nn.Module):
    """Base class: holds the backbone, its declared injection sites and the active conditioning."""

    family: str = ""
    objective: str = ""
    replaces_first_frame: bool = False  # True: latent frame 0 is the clean condition, not generated
    concat_condition: bool = False  # True: the condition needs the padded clip's latents (Wan 2.1 I2V)

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_encoder: nn.Module | None = None  # frozen CLIP tower, if the backbone uses one (set by subclasses)
        self._active: Conditioning | None = None
        self._handles: list[Any] = []
        self.sites: tuple[InjectionSite, ...] = tuple(self.declare_sites(backbone))
        for site in self.sites:
            self._register(site)

    # -- to implement ---------------------------------------------------------------------------
    @classmethod
    def declare_sites(cls, backbone: nn.Module) -> list[InjectionSite]:  # pragma: no cover - interface
        """The named injection sites of this backbone."""
        raise NotImplementedError

    def layout(
        self, emb: torch.Tensor, target: torch.Tensor, site: InjectionSite, inputs: tuple
    ) -> torch.Tensor:  # pragma: no cover - interface
        """`(b, f, emb_dim)` contribution -> a tensor shaped like the site's `target` tensor (`inputs`: the hooked
        module's positional arguments)."""
        raise NotImplementedError

    @property
    def emb_dim(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def assumptions(self) -> dict[str, str]:  # pragma: no cover - interface
        """The `BackboneSpec` texts this adapter states: `first_frame`, `objective` and `injection_sites`."""
        raise NotImplementedError

    def condition(self, first_frame: torch.Tensor, first_latent: torch.Tensor) -> FrameCondition:  # pragma: no cover
        """Build the conditioning once per start frame.

        Args:
            first_frame: `(batch, 3, height, width)` pixels in [-1, 1].
            first_latent: `(batch, channels, h, w)` the codec's latent of that frame.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition) -> torch.Tensor:  # pragma: no cover
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
    def spec(self, codec: nn.Module) -> BackboneSpec:
        """The adapter's stated assumptions with the latent geometry of `codec`."""
        return BackboneSpec(
            family=self.family,
            latent_channels=codec.latent_channels,
            spatial_compression=codec.spatial_compression,
            temporal_compression=codec.temporal_compression,
            emb_dim=self.emb_dim,
            **self.assumptions(),
        )

    def forward_copies(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition, copies: int) -> torch.Tensor:
        """The network on `copies` stacked copies of `x` `(b, f, C, h, w)` and `t` `(b,)`: one forward of batch
        `copies * b` under `cond` (and the active conditioning) given for that batch -> `(copies * b, f, C, h, w)`.
        Classifier-free guidance runs its passes this way; adapters may share work across the identical copies."""
        return self(torch.cat([x] * copies), torch.cat([t] * copies), cond)

    @property
    def active(self) -> Conditioning | None:
        """The conditioning in effect (None outside `conditioned`)."""
        return self._active

    @contextlib.contextmanager
    def conditioned(self, conditioning: Conditioning | None) -> Iterator[None]:
        """Within the block, every declared site adds the active branches' summed contribution.

        This is also how a wrapped backbone is used inside a diffusers pipeline:
        `with adapter.conditioned(Conditioning({"actions": emb})): pipe(...)`.
        """
        previous, self._active = self._active, conditioning
        try:
            yield
        finally:
            self._active = previous

    def contribution(self, site: InjectionSite, target: torch.Tensor, inputs: tuple = ()) -> torch.Tensor | None:
        """What the site adds to `target` now (None: nothing active there)."""
        if self._active is None:
            return None
        emb = self._active.at(site.name)
        if emb is None:
            return None
        return self.layout(emb, target, site, inputs).to(target.dtype)

    def _register(self, site: InjectionSite) -> None:
        module = _submodule(self.backbone, site.module)
        if site.target.startswith("kwarg:"):
            key = site.target.split(":", 1)[1]

            def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
                add = self.contribution(site, kwargs[key], args)
                return None if add is None else (args, dict(kwargs, **{key: kwargs[key] + add}))

            self._handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            return
        index = None if site.target == "output" else int(site.target[len("output[") : -1])

        def hook(mod: nn.Module, args: tuple, output: Any) -> Any:
            target = output if index is None else output[index]
            add = self.contribution(site, target, args)
            if add is None:
                return None
            new = self.apply_output(site, mod, args, target, add)
            return new if index is None else (*output[:index], new, *output[index + 1 :])

        self._handles.append(module.register_forward_hook(hook))

    def apply_output(
        self, site: InjectionSite, module: nn.Module, inputs: tuple, target: torch.Tensor, add: torch.Tensor
    ) -> torch.Tensor:
        """The new output of an output site: `target + add` (adapters may recompute `target` more exactly)."""
        return target + add

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters the adapter introduces (trained with the action encoder), e.g. SVD's null context."""
        return []

    @staticmethod
    def check_latents(x: torch.Tensor, conditioning: Conditioning | None, what: str = "latents") -> None:
        if x.ndim != 5:
            raise ValueError(f"{what} must be (batch, latent_frames, channels, h, w), got shape {tuple(x.shape)}")
        if conditioning is None:
            return
        for name, value in conditioning.branches.items():
            for emb in value.values() if isinstance(value, dict) else [value]:
                if emb.shape[0] != x.shape[0] or emb.shape[1] != x.shape[1]:
                    raise ValueError(
                        f"{name} and latents disagree: {name} give {emb.shape[1]} latent frames for batch "
                        f"{emb.shape[0]}, latents have {x.shape[1]} frames for batch {x.shape[0]}"
                    )
