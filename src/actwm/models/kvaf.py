"""The KVAF branch of EA-WM (Sec. 3.2): a second token stream of Kinematic-to-Visual Action Field latents,
processed by a full-depth copy of the DiT blocks, fused with the video stream by event-aware gated
bidirectional cross-attention at a sparse set of layers.

How it plugs into the conditioning contract (`actwm.models.conditioning`): the `"kvaf"` branch of a
`Conditioning` is a mapping of *stream inputs* (keys that are not site names, so additive sites ignore them):
`"kvaf:clean"` `(b, f, C, h, w)` the codec latents of the KVAF video, `"kvaf:noise"` `(b, f, C, h, w)` the noise
that the stream is noised with, `"kvaf:keep"` `(b, f)` 1 to use the stream, 0 to drop it (guidance and KVAF
dropout stack a dropped member as zeros, which makes every fusion contribution to the video stream exactly
zero). The branch registers hooks on the unedited diffusers `WanTransformer3DModel`:

1. transformer pre-hook: the KVAF latents noised to each token's own noise level (the video's per-token
   timesteps: latent frame 0 stays clean in frame-0-replacement backbones), patch-embedded by a copy of the
   backbone's patch embedding;
2. `rope` / `condition_embedder` hooks: the rotary embedding and the time embedding of this call (the KVAF
   stream uses the backbone's own timestep modulation and rotary embedding);
3. block pre-hook at block i: at a fusion layer, `EventFusion` updates both streams (the updated video tokens
   then enter the original block i); then KVAF block i (the copy) advances the KVAF stream;
4. transformer hook: the KVAF head (a copy of the output norm + a zero-initialised projection) predicts the
   KVAF stream's flow target, and every fusion layer's event latent is unpatchified for EDLS.

With the gates (or, without the event gate, the cross-attention output projections) zero-initialised, the video
stream of a fresh branch is bit-identical to the backbone without it. The per-call predictions are in
`branch.outputs` after each network call.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from actwm.checks import require, require_at_least, require_choice, require_range
from actwm.models.conditioning import tile_batch
from actwm.pixels import signed_to_unit, unit_to_signed

KVAF = "kvaf"
KEY_CLEAN, KEY_NOISE, KEY_KEEP = "kvaf:clean", "kvaf:noise", "kvaf:keep"
KEY_TOKENS = "kvaf:tokens"  # the numeric-actions ablation: (b, f, D) per-latent-frame stream input
CONDITIONINGS = ("actions", "kvaf", "kvaf+actions")


@dataclass(frozen=True)
class KvafConfig:
    """Settings of the KVAF branch (saved in `WorldModelConfig.kvaf`).

    Attributes:
        every: fusion before every `every`-th block (blocks 0, every, 2 every, ...; at least block 0).
        layers: explicit fusion block indices (overrides `every`).
        event_dim: width of the event MLP (None: the backbone's hidden size).
        gate: False = the ablation "bidirectional cross-attention without the event gate" (no event MLP, no
            gate, no event latent, no EDLS; the cross-attention output projections start at zero instead).
        edls_weight: weight of the EDLS loss (EA-WM: 0.1).
        kvaf_weight: weight of the KVAF stream's flow loss.
        dropout: probability of dropping a training sample's KVAF stream (for guidance over the "kvaf" branch).
        source: "kvaf" (the stream is the KVAF video's latents) or "numeric" (the ablation "numeric actions
            instead of KVAFs": the same two-stream model whose second stream starts from an embedding of the
            numeric actions, one per latent frame, spread over the frame's tokens; no KVAF video, no KVAF head loss).
    """

    every: int = 5
    layers: tuple[int, ...] | None = None
    event_dim: int | None = None
    gate: bool = True
    edls_weight: float = 0.1
    kvaf_weight: float = 1.0
    dropout: float = 0.0
    source: str = "kvaf"

    def __post_init__(self) -> None:
        require_choice(self, "source", ("kvaf", "numeric"))
        require_at_least(self, 1, "every")
        valid = self.layers is None or (len(self.layers) > 0 and min(self.layers) >= 0)
        require(valid, self, "layers", "None or non-empty block indices >= 0")
        require_at_least(self, 0, "edls_weight", "kvaf_weight")
        require_range(self, "dropout", 0.0, 1.0, closed="[)")

    @classmethod
    def from_dict(cls, d: dict | None) -> "KvafConfig":
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise ValueError(f"WorldModelConfig.kvaf has unknown keys {sorted(set(d) - known)}; known: {sorted(known)}")
        if d.get("layers") is not None:
            d["layers"] = tuple(int(i) for i in d["layers"])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def fusion_layers(self, blocks: int) -> tuple[int, ...]:
        """Block indices before which the streams are fused."""
        layers = self.layers if self.layers is not None else tuple(range(0, blocks, self.every))
        if max(layers) >= blocks:
            raise ValueError(f"kvaf.layers {layers} name blocks beyond the backbone's {blocks}")
        return tuple(sorted(set(layers)))


def check_conditioning(name: str) -> None:
    if name not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {name!r}")


class StreamCrossAttention(nn.Module):
    """Multi-head attention of one stream's tokens `(b, S, D)` to the other's `(b, S', D)` (pre-norm)."""

    def __init__(self, dim: int, heads: int, zero_out: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))
        if zero_out:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, kv = self.norm_q(x), self.norm_kv(context)
        split = lambda t: rearrange(t, "b s (h d) -> b h s d", h=self.heads)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.to_q(q)), split(self.to_k(kv)), split(self.to_v(kv)))
        return self.to_out(rearrange(out, "b h s d -> b s (h d)"))


class EventFusion(nn.Module):
    """Event-aware fusion (EA-WM Eqs. 4-6) of video tokens `v` and KVAF tokens `k`, both `(b, S, D)`.

    Event MLP over both streams -> shared representation r `(b, S, E)`; gate `g = tanh(W_g r)` `(b, S, 1)` and
    event latent `e = W_e r` `(b, S, patch * C)` (both heads zero-initialised);
    `v' = v + keep * g * CA(v <- k)`, `k' = k + g * CA(k <- v)`. With `gate=False` (ablation) there is no event
    MLP, gate or event latent: `v' = v + keep * CA(v <- k)`, `k' = k + CA(k <- v)` with zero-initialised
    output projections.
    """

    def __init__(self, dim: int, latent_dim: int, event_dim: int, heads: int, gate: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.event_mlp = self.gate = self.event_head = None
        if gate:
            self.event_mlp = nn.Sequential(
                nn.Linear(2 * dim, event_dim), nn.GELU(), nn.Linear(event_dim, event_dim), nn.GELU()
            )
            self.gate = nn.Linear(event_dim, 1)
            self.event_head = nn.Linear(event_dim, latent_dim)
            for head in (self.gate, self.event_head):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        self.to_video = StreamCrossAttention(dim, heads, zero_out=not gate)
        self.to_kvaf = StreamCrossAttention(dim, heads, zero_out=not gate)

    def forward(
        self, v: torch.Tensor, k: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """-> (v', k', gate `(b, S, 1)` or None, event latent `(b, S, patch * C)` or None); keep `(b, 1, 1)`."""
        dv, dk = self.to_video(v, k), self.to_kvaf(k, v.to(k.dtype))
        g = e = None
        if self.event_mlp is not None:
            r = self.event_mlp(torch.cat([self.norm(v.to(k.dtype)), self.norm(k)], dim=-1))
            g, e = torch.tanh(self.gate(r)), self.event_head(r)
            dv, dk = g * dv, g * dk
        return v + (keep * dv).to(v.dtype), k + dk, g, e


class KvafBranch(nn.Module):
    """The KVAF stream of a Wan backbone: blocks copied from it (call before LoRA is attached), fusion layers,
    the KVAF head and the hooks that run them inside the backbone's own forward (see the module docstring).

    Attributes:
        outputs: after a call with the branch active: "kvaf" `(b, f, C, h, w)` the KVAF head's flow prediction,
            "events" one `(b, f, C, h, w)` event latent per gated fusion layer, "gates" one `(b, S, 1)` per gated
            fusion layer (S = tokens); empty after a call without it.
    """

    def __init__(self, adapter: nn.Module, cfg: KvafConfig, numeric: nn.Module | None = None) -> None:
        """`numeric`: with `cfg.source == "numeric"`, the action encoder `(b, T, D) -> (b, f, hidden)` whose
        output starts the stream."""
        super().__init__()
        backbone = adapter.backbone
        if getattr(adapter, "family", "") != "wan":
            raise ValueError(
                f"the KVAF branch is implemented for the Wan backbones (WanTransformer3DModel); got the "
                f"{getattr(adapter, 'family', type(adapter).__name__)!r} family: use conditioning='actions' there"
            )
        bcfg = backbone.config
        dim = bcfg.num_attention_heads * bcfg.attention_head_dim
        self.cfg, self.patch = cfg, tuple(bcfg.patch_size)
        self.channels = bcfg.out_channels
        self.token_dim = self.channels * self.patch[0] * self.patch[1] * self.patch[2]
        self._adapter = [adapter]  # not a submodule: the adapter belongs to the world model
        # 1. the full-depth copy of the blocks and a patch embedding for C-channel KVAF latents
        self.blocks = copy.deepcopy(backbone.blocks)
        embed = backbone.patch_embedding
        self.patch_embedding = nn.Conv3d(self.channels, dim, kernel_size=self.patch, stride=self.patch)
        with torch.no_grad():
            self.patch_embedding.weight.copy_(embed.weight[:, : self.channels])
            self.patch_embedding.bias.copy_(embed.bias)
        # 2. the KVAF head: the backbone's output modulation, a zero-initialised projection
        self.scale_shift_table = nn.Parameter(backbone.scale_shift_table.detach().clone())
        self.norm_out = nn.LayerNorm(dim, eps=backbone.norm_out.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, self.token_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        # 3. fusion layers
        self.layers = cfg.fusion_layers(len(backbone.blocks))
        event_dim = cfg.event_dim or dim
        self.fusions = nn.ModuleDict(
            {
                str(i): EventFusion(dim, self.token_dim, event_dim, bcfg.num_attention_heads, cfg.gate)
                for i in self.layers
            }
        )
        self.numeric = numeric if cfg.source == "numeric" else None
        if cfg.source == "numeric" and numeric is None:
            raise ValueError("kvaf.source='numeric' needs an action encoder for the stream")
        self.outputs: dict[str, Any] = {}
        self._call: dict[str, Any] | None = None
        self._hook(backbone)

    # -- parameters ------------------------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """The stream's input embedding and KVAF head (new parameters, trained in both stages); the numeric
        ablation has no KVAF video or head: its action encoder instead."""
        if self.numeric is not None:
            return list(self.numeric.parameters())
        mods = (self.patch_embedding, self.proj_out)
        return [p for m in mods for p in m.parameters()] + [self.scale_shift_table]

    def fusion_parameters(self) -> list[nn.Parameter]:
        return list(self.fusions.parameters())

    def set_train_mode(self, mode: str, stage: int = 2) -> None:
        """The KVAF blocks follow `mode` (full: all, lora: LoRA only, frozen: none); the head always trains; the
        fusion trains in stage 2 only (stage 1: fusion frozen, EA-WM 4.1)."""
        if stage not in (1, 2):
            raise ValueError(f"kvaf stage must be 1 (fusion frozen) or 2 (fusion trained), got {stage}")
        reach = max(self.layers) if self.numeric is not None else len(self.blocks)  # numeric: no head after them
        for name, p in self.blocks.named_parameters():
            used = int(name.split(".")[0]) < reach
            p.requires_grad_(used and (mode == "full" or (mode == "lora" and "lora_" in name)))
        unused = [self.patch_embedding, self.proj_out, self.scale_shift_table] if self.numeric is not None else []
        for p in [q for m in unused for q in ([m] if isinstance(m, nn.Parameter) else m.parameters())]:
            p.requires_grad_(False)  # (DDP must not wait for gradients that never come)
        for p in self.head_parameters():
            p.requires_grad_(True)
        for p in self.fusion_parameters():
            p.requires_grad_(stage == 2)
        if self.numeric is not None:  # the stream's last update feeds nothing without a KVAF head
            self.fusions[str(reach)].to_kvaf.requires_grad_(False)

    # -- hooks -----------------------------------------------------------------------------------
    def _hook(self, backbone: nn.Module) -> None:
        backbone.register_forward_pre_hook(self._start, with_kwargs=True)
        backbone.rope.register_forward_hook(lambda m, a, out: self._keep("rope", out))
        backbone.condition_embedder.register_forward_hook(lambda m, a, out: self._keep("temb", out[0]))
        for i, block in enumerate(backbone.blocks):
            block.register_forward_pre_hook(lambda m, args, i=i: self._block(i, args))
        backbone.register_forward_hook(self._finish)

    def _keep(self, key: str, value: Any) -> None:
        if self._call is not None:
            self._call[key] = value

    def _inputs(self) -> dict[str, torch.Tensor] | None:
        active = self._adapter[0].active
        return None if active is None else active.branches.get(KVAF)

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Noise the KVAF latents to each token's level and patch-embed them."""
        self._call, self.outputs = None, {}
        inputs = self._inputs()
        if inputs is None:
            return None
        if module.gradient_checkpointing and torch.is_grad_enabled():
            raise ValueError("the KVAF branch runs in hooks that gradient checkpointing would re-run: turn it off")
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        b, _, f, h, w = hidden.shape
        pt, ph, pw = self.patch
        keep = tile_batch(inputs[KEY_KEEP], b, f"{KVAF} {KEY_KEEP}")[:, 0].view(b, 1, 1)
        grid = (f // pt, h // ph, w // pw)
        if KEY_TOKENS in inputs:  # numeric ablation: one embedding per latent frame, on each of its tokens
            tokens = repeat(tile_batch(inputs[KEY_TOKENS], b, KVAF), "b f d -> b (f n) d", n=grid[1] * grid[2])
            self._call = dict(kvaf=tokens.contiguous(), keep=keep, grid=grid, gates=[], events=[])
            return None
        clean, noise = (tile_batch(inputs[k], b, f"{KVAF} {k}") for k in (KEY_CLEAN, KEY_NOISE))
        s = timestep.float() / 1000.0
        if s.ndim == 1:
            s = s.expand(b).view(b, 1, 1, 1, 1)
        else:
            s = repeat(s, "b (f h w) -> b 1 (f pt) (h ph) (w pw)", f=f // pt, h=h // ph, pt=pt, ph=ph, pw=pw)
        clean, noise = (rearrange(x.float(), "b f c h w -> b c f h w") for x in (clean, noise))
        noisy = ((1 - s) * clean + s * noise).to(self.patch_embedding.weight.dtype)
        tokens = self.patch_embedding(noisy).flatten(2).transpose(1, 2).contiguous()
        self._call = dict(kvaf=tokens, keep=keep, grid=grid, gates=[], events=[])
        return None

    def _block(self, i: int, args: tuple) -> tuple | None:
        """Before video block i: fuse (at a fusion layer), then advance the KVAF stream by its block i."""
        c = self._call
        if c is None:
            return None
        v, enc, tproj, rope = args
        fused = str(i) in self.fusions
        if fused:
            v, c["kvaf"], g, e = self.fusions[str(i)](v, c["kvaf"], c["keep"])
            if g is not None:
                c["gates"].append(g)
                c["events"].append(self.unpatchify(e, c["grid"]))
        if self.numeric is None or i < max(self.layers):  # numeric ablation: nothing reads the stream later
            c["kvaf"] = self.blocks[i](c["kvaf"], enc, tproj, c.get("rope", rope))
        return (v, enc, tproj, rope) if fused else None

    def _finish(self, module: nn.Module, args: tuple, output: Any) -> None:
        """The KVAF head on the last KVAF tokens, with the backbone's output modulation."""
        c, self._call = self._call, None
        if c is None:
            return None
        k, temb = c["kvaf"], c["temb"]
        table = self.scale_shift_table.to(temb.device)
        if temb.ndim == 3:  # per-token time embedding (b, S, D)
            shift, scale = (table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(k.float()) * (1 + scale) + shift).type_as(k)
        kvaf = self.unpatchify(self.proj_out(x), c["grid"])
        self.outputs = {"kvaf": kvaf, "events": c["events"], "gates": c["gates"]}
        return None

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """`(b, S, patch * C)` -> `(b, f, C, h, w)` in the backbone's own token order (`grid`: tokens per axis)."""
        f, h, w = grid
        pt, ph, pw = self.patch
        return rearrange(
            tokens.float(),
            "b (f h w) (pt ph pw c) -> b (f pt) c (h ph) (w pw)",
            f=f,
            h=h,
            w=w,
            pt=pt,
            ph=ph,
            pw=pw,
        )


def kvaf_inputs(clean: torch.Tensor, noise: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The `"kvaf"` branch of a `Conditioning`: `clean`, `noise` `(b, f, C, h, w)`; `keep` `(b,)` bools (None: all)."""
    if clean.ndim != 5 or clean.shape != noise.shape:
        raise ValueError(
            f"KVAF latents and noise must be (b, f, C, h, w) alike, got {tuple(clean.shape)}, {tuple(noise.shape)}"
        )
    b, f = clean.shape[:2]
    keep = torch.ones(b, dtype=clean.dtype, device=clean.device) if keep is None else keep.to(clean.dtype)
    return {KEY_CLEAN: clean, KEY_NOISE: noise, KEY_KEEP: repeat(keep, "b -> b f", f=f)}


def numeric_inputs(branch: KvafBranch, actions: torch.Tensor, keep: torch.Tensor | None = None) -> dict:
    """The `"kvaf"` branch of the numeric-actions ablation: `(b, T, D)` normalised actions -> stream inputs."""
    tokens = branch.numeric(actions)  # (b, f, hidden)
    b, f = tokens.shape[:2]
    keep = torch.ones(b, dtype=tokens.dtype, device=tokens.device) if keep is None else keep.to(tokens.dtype)
    return {KEY_TOKENS: tokens, KEY_KEEP: repeat(keep, "b -> b f", f=f)}


def frame_differences(video: torch.Tensor) -> torch.Tensor:
    """EA-WM Eq. 7: `(b, T, 3, H, W)` pixels in [-1, 1] -> the frame-difference video `|x_t - x_{t-1}|` in [-1, 1]
    (differences of unit-range pixels, frame 0 black, mapped like any other video)."""
    unit = signed_to_unit(video.float())
    diff = torch.cat([torch.zeros_like(unit[:, :1]), (unit[:, 1:] - unit[:, :-1]).abs()], dim=1)
    return unit_to_signed(diff)


def _masked_mse(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(b, f, ...)` squared errors -> scalar mean over the frames where `mask` `(f,)` is True."""
    per_frame = err.flatten(2).mean(-1)  # (b, f)
    m = mask.to(per_frame.dtype)
    return ((per_frame * m).sum(1) / m.sum()).mean()


def kvaf_loss(
    wm: nn.Module,
    video: torch.Tensor,
    actions: torch.Tensor,
    state: torch.Tensor | None,
    kvaf_video: torch.Tensor | None,
    generator: torch.Generator | None = None,
    action_dropout: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """EA-WM Eq. 8 on a clip: video flow loss (latent frame 0 excluded) + `kvaf_weight` KVAF flow loss +
    `edls_weight` EDLS loss (each gated fusion layer's event latent vs the codec encoding of the
    frame-difference video), with video and KVAF streams denoised jointly at the same noise level.

    Args:
        wm: a flow-objective `WorldModel` with a KVAF branch (`wm.kvaf`).
        video, kvaf_video: `(b, T, 3, H, W)` in [-1, 1], aligned frame by frame.
        actions: `(b, T, D)` normalised actions (used when the model also has the "actions" branch).
    Returns:
        the scalar total and its parts {"video", "kvaf", "edls"} as floats.
    """
    branch: KvafBranch = wm.kvaf
    numeric = branch.numeric is not None
    if not numeric and (kvaf_video is None or kvaf_video.shape != video.shape):
        got = None if kvaf_video is None else tuple(kvaf_video.shape)
        raise ValueError(
            f"a KVAF world model needs the clip's KVAF video shaped like its video {tuple(video.shape)}, got {got}"
        )
    if wm.objective.name != "flow":
        raise ValueError("the KVAF branch trains with the flow objective (Wan); this model's objective is edm")
    # 1. latents of the video, the KVAF video and the frame-difference video (EDLS target)
    x0 = wm.encode(video)
    k0 = x0 if numeric else wm.encode(kvaf_video)  # (numeric: unused)
    edls = wm.encode(frame_differences(video)) if branch.cfg.gate else None
    cond = wm.condition(video[:, 0], x0[:, 0], frames=video.shape[1])
    # 2. one noise level, two noises; branch dropout for guidance
    b, device = x0.shape[0], x0.device
    t = wm.objective.sample_t(b, generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    knoise = torch.randn(k0.shape, generator=generator, device=device)
    keep = torch.rand(b, generator=generator, device=device) >= action_dropout if action_dropout > 0 else None
    kkeep = torch.rand(b, generator=generator, device=device) >= branch.cfg.dropout if branch.cfg.dropout else None
    inputs = numeric_inputs(branch, actions, kkeep) if numeric else kvaf_inputs(k0, knoise, kkeep)
    conditioning = wm.conditioning(actions, state, keep, kvaf=inputs)
    # 3. one network call: the video prediction, and the KVAF / event predictions in branch.outputs
    v = wm.net(wm.objective.noisy(x0, t, noise), t, cond, conditioning)
    out = branch.outputs
    mask = torch.ones(x0.shape[1], dtype=torch.bool, device=device)
    mask[0] = False  # the first frame is the image condition (Eq. 8)
    parts = {"video": _masked_mse((v - (noise - x0)) ** 2, mask)}
    total = parts["video"]
    if not numeric:
        parts["kvaf"] = _masked_mse((out["kvaf"] - (knoise - k0)) ** 2, mask)
        total = total + branch.cfg.kvaf_weight * parts["kvaf"]
    if edls is not None:
        parts["edls"] = torch.stack([_masked_mse((e - edls) ** 2, mask) for e in out["events"]]).mean()
        total = total + branch.cfg.edls_weight * parts["edls"]
    return total, {k: float(p.detach()) for k, p in parts.items()}


def kvaf_branch_for(wm: nn.Module, kvaf_video: torch.Tensor, seeds: list[int]) -> dict[str, torch.Tensor]:
    """The `"kvaf"` branch for generation: `(b, T, 3, H, W)` KVAF video in [-1, 1] -> its latents with one fixed
    noise per sample seed (the stream is re-noised to each step's level from them)."""
    clean = wm.encode(kvaf_video)
    noise = torch.cat(
        [torch.randn((1, *clean.shape[1:]), generator=torch.Generator().manual_seed(10_000 + s)) for s in seeds]
    ).to(clean.device)
    return kvaf_inputs(clean, noise)
