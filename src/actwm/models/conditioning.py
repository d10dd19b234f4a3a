"""The typed conditioning contract between a world model and its backbone adapter.

Three things, each with one home:

- `InjectionSite`: where an adapter adds conditioning inside the unedited diffusers backbone (a module path and
  what to add to there: a keyword argument before the module runs, or its output). Every adapter declares its
  sites (`BackboneAdapter.declare_sites`); one generic hook factory serves them all.
- `FrameCondition`: the first-frame / text / image conditioning of one clip (built once per start frame).
- `Conditioning`: the named *branches* active for one network call. Each branch contributes a per-latent-frame
  embedding `(batch, latent_frames, emb_dim)` (or one per site: a mapping site name -> tensor); at every site the
  adapter adds the sum of the active branches' contributions to the timestep embedding. Today's branch is
  `"actions"` (the EgoWM action embedding, `F_i(Z_t + Z_a)`); a second one (KVAF) adds its own.
- `Guidance`: classifier-free guidance that drops branches (or groups of branches) independently:
  `out = cond + sum_g (w_g - 1) * (cond - out_without_g)`; with one group this is `uncond + w (cond - uncond)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import torch

ACTIONS = "actions"  # the EgoWM action-embedding branch
Contribution = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class InjectionSite:
    """One place in a backbone where branch contributions are added.

    Attributes:
        name: stable name of the site (tests and per-site contributions use it), e.g. "up_blocks.1".
        module: dotted path of the module inside the backbone ("" = the backbone itself).
        target: "kwarg:NAME" (forward pre-hook: add to keyword argument NAME), "output" (forward hook: add to
            the output) or "output[i]" (add to element i of a tuple output).
    """

    name: str
    module: str
    target: str

    def __post_init__(self) -> None:
        ok = self.target == "output" or self.target.startswith("kwarg:") or self.target.startswith("output[")
        if not ok:
            raise ValueError(f"InjectionSite.target must be 'kwarg:NAME', 'output' or 'output[i]', got {self.target!r}")


@dataclass
class FrameCondition:
    """What conditions generation on the start frame (one entry per clip in the batch).

    Attributes:
        latent: `(b, C, h, w)` the codec's latent of the first frame (SVD: scaled as its pipeline does).
        context: `(b, tokens, dim)` cross-attention context (SVD: CLIP image embeds; Cosmos/Wan: text).
        time_ids: `(b, 3)` SVD's added time ids (fps - 1, motion bucket, noise augmentation), else None.
        padded: `(b, f, C, h, w)` latents of (first frame, grey frames...) for channel-concat Wan I2V, else None.
        image: `(b, tokens, width)` CLIP hidden states for Wan I2V image cross-attention, else None.
    """

    latent: torch.Tensor
    context: torch.Tensor
    time_ids: torch.Tensor | None = None
    padded: torch.Tensor | None = None
    image: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = self.latent.shape[0]
        for name, value in self.tensors().items():
            if value.shape[0] != b:
                raise ValueError(f"FrameCondition.{name} has batch {value.shape[0]}, latent has {b}")

    @property
    def batch(self) -> int:
        return self.latent.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The set fields by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def repeat(self, n: int) -> "FrameCondition":
        """n copies stacked along the batch (for one batched forward of several guidance passes)."""
        return replace(self, **{k: torch.cat([v] * n) for k, v in self.tensors().items()})


@dataclass
class Conditioning:
    """Named branches for one network call: name -> `(b, f, emb_dim)` or {site name: `(b, f, emb_dim)`}."""

    branches: dict[str, Contribution] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.branches)

    def without(self, names: Sequence[str]) -> "Conditioning":
        """These branches dropped (the action-free / branch-free pass of guidance)."""
        unknown = set(names) - set(self.branches)
        if unknown:
            raise ValueError(f"cannot drop unknown conditioning branches {sorted(unknown)}; have {list(self.branches)}")
        return Conditioning({k: v for k, v in self.branches.items() if k not in names})

    def at(self, site: str) -> torch.Tensor | None:
        """Sum of the active branches' contributions at `site` (None when no branch contributes there)."""
        total = None
        for value in self.branches.values():
            part = value.get(site) if isinstance(value, Mapping) else value
            if part is not None:
                total = part if total is None else total + part
        return total

    @staticmethod
    def stack(members: Sequence["Conditioning"], like: "Conditioning") -> "Conditioning":
        """Concatenate members along the batch; a branch of `like` missing from a member contributes zeros."""
        out: dict[str, Contribution] = {}
        for name, ref in like.branches.items():
            parts = [m.branches.get(name) for m in members]
            if isinstance(ref, Mapping):
                out[name] = {
                    site: torch.cat([p[site] if p is not None else torch.zeros_like(t) for p in parts])
                    for site, t in ref.items()
                }
            else:
                out[name] = torch.cat([p if p is not None else torch.zeros_like(ref) for p in parts])
        return Conditioning(out)


def tile_batch(emb: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """`(b, ...)` -> `(batch, ...)`: as is, or tiled when a pipeline stacks copies of its batch (SVD's
    classifier-free guidance runs [negative, positive] in one call)."""
    b = emb.shape[0]
    if batch == b:
        return emb
    if batch % b:
        raise ValueError(
            f"{what}: the conditioning has batch {b} but the backbone was called with batch {batch}; give one "
            f"conditioning row per sample the pipeline generates (batch * num_videos_per_prompt)"
        )
    return emb.repeat(batch // b, *([1] * (emb.ndim - 1)))


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance over conditioning branches.

    Attributes:
        scales: group of branch names -> weight w (1 = off). Each group is dropped together in its own pass.
        interval: guide only at noise levels in `(lo, hi]` (flow time t, or EDM sigma); None = every level.
    """

    scales: tuple[tuple[tuple[str, ...], float], ...] = ()
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for group, w in self.scales:
            if not math.isfinite(w):
                raise ValueError(f"guidance weight for {list(group)} must be finite, got {w}")
        if self.interval is not None:
            lo, hi = self.interval
            if math.isnan(lo) or math.isnan(hi) or not lo < hi:
                raise ValueError(f"guidance_interval must be (lo, hi) with lo < hi, got {self.interval}")

    @classmethod
    def of(
        cls, guidance: "float | Mapping[str | tuple[str, ...], float] | Guidance | None", interval=None
    ) -> "Guidance":
        """A float w guides the "actions" branch; a mapping names the branch (or tuple of branches) per weight."""
        if isinstance(guidance, Guidance):
            return guidance
        if guidance is None:
            guidance = 1.0
        items = guidance.items() if isinstance(guidance, Mapping) else [(ACTIONS, guidance)]
        scales = tuple(((k,) if isinstance(k, str) else tuple(k), float(w)) for k, w in items)
        return cls(tuple((g, w) for g, w in scales if w != 1.0), tuple(interval) if interval is not None else None)

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        return tuple(g for g, _ in self.scales)

    @property
    def active(self) -> bool:
        return bool(self.scales)

    def guided_levels(self, levels: Sequence[float]) -> list[bool]:
        """Which noise levels (the sampler's schedule, computed in float64) are guided: `lo < level <= hi`.

        A level within 1e-12 (relative) of a bound counts as equal to it, so a schedule value that is the
        bound up to rounding (0.3 computed as 0.30000000000000004) stays on the bound's side of the interval.
        """
        if not self.active:
            return [False] * len(levels)
        if self.interval is None:
            return [True] * len(levels)
        lo, hi = self.interval
        out = []
        for v in levels:
            above_lo = v > lo and not math.isclose(v, lo, rel_tol=1e-12, abs_tol=1e-15)
            below_hi = v <= hi or math.isclose(v, hi, rel_tol=1e-12, abs_tol=1e-15)
            out.append(above_lo and below_hi)
        return out

    def combine(self, cond: torch.Tensor, dropped: Sequence[torch.Tensor]) -> torch.Tensor:
        """`cond + sum_g (w_g - 1) (cond - dropped_g)`; with one group `dropped + w (cond - dropped)`."""
        if len(dropped) == 1:
            return dropped[0] + self.scales[0][1] * (cond - dropped[0])
        out = cond
        for (_, w), d in zip(self.scales, dropped):
            out = out + (w - 1.0) * (cond - d)
        return out
