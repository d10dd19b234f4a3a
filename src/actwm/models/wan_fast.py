"""Inference fast paths for the diffusers Wan transformer, installed by `WanAdapter` without editing diffusers.

Each path is a named switch in `FastPaths` (all on by default: each leaves outputs equal to float rounding, which
tests/models/test_wan_fast.py pins against the stock modules). They act while autograd is off (sampling,
`actions_for_pipeline`); a training forward runs the stock diffusers code unless `FastPaths.training` is set
(`TrainConfig.fast_paths`): then `TRAINING_PATHS` act under autograd too, with the same gradients to float rounding
(the parameters `single_key` skips get an exact zero gradient, as in stock, so AdamW still decays them).

- `shared_patch`: a guided level's forward stacks identical copies of `x_t` (the conditional and branch-dropped
  passes); the patch embedding of the first copy is repeated for the others.
- `fast_rope`: the rotary tables depend only on the latent grid: built once per grid and applied in float32 with
  one complex product per pair (diffusers rebuilds them every call and applies them in float64, then rounds back to
  the activations' float32).
- `single_key`: cross-attention to ONE context token (the tiny presets' empty-prompt context): softmax over one key
  is exactly 1, so the output is `to_out(v)` for every query; the query projection and the attention are skipped.
- `frame_modulation`: per-latent-frame timesteps and action embeddings give each frame's tokens one modulation row;
  the blocks apply it per frame `(B, f, 1, C)` against tokens viewed `(B, f, n, C)` instead of materialising the
  per-token `(B, S, 6, C)` table diffusers builds in every block (the same elementwise operations, per value).
  In training it also computes the patch embedding token-major (`SharedPatchEmbed._tokens_last`, the same linear map
  of patches): compiled under bf16 autocast, inductor's CPU kernels otherwise gave NaN gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanRotaryPosEmbed, WanTransformerBlock
from einops import rearrange
from torch import nn

TRAINING_PATHS = ("single_key", "frame_modulation")  # the paths that also act under autograd with `training`


@dataclass
class FastPaths:
    """Switches of the fast paths (module docstring); `FastPaths.off()` = stock diffusers everywhere. `training`:
    `TRAINING_PATHS` also act while autograd is on (off by default: training runs the stock code)."""

    shared_patch: bool = True
    fast_rope: bool = True
    single_key: bool = True
    frame_modulation: bool = True
    training: bool = False

    @classmethod
    def off(cls) -> "FastPaths":
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The paths' switches (not `training`)."""
        return tuple(f.name for f in fields(cls) if f.name != "training")

    def on(self, name: str) -> bool:
        """Whether path `name` acts now: switched on, and autograd off (or `training` and a training path)."""
        return getattr(self, name) and (not torch.is_grad_enabled() or (self.training and name in TRAINING_PATHS))


class SharedPatchEmbed(nn.Conv3d):
    """The backbone's patch `Conv3d` (same parameters and state-dict keys). `copies`: the call's batch is that many
    identical stacked copies (set by the adapter around a guided forward); while sampling, the first copy is embedded
    and repeated (`FastPaths.shared_patch`)."""

    paths: FastPaths
    copies: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, F, H, W)` -> `(B, width, F', h, w)`."""
        if torch.is_grad_enabled() and self.paths.on("frame_modulation") and self._patchwise(x):
            return self._tokens_last(x)
        if self.copies == 1 or x.shape[0] % self.copies or not self.paths.on("shared_patch"):
            return super().forward(x)
        return super().forward(x[: x.shape[0] // self.copies]).repeat(self.copies, 1, 1, 1, 1)

    def _patchwise(self, x: torch.Tensor) -> bool:
        """Whether this convolution is a linear map of non-overlapping patches that tile `x` (Wan's patchify)."""
        plain = self.padding_mode == "zeros" and self.groups == 1 and set(self.dilation) == {1}
        tiled = all(n % k == 0 for n, k in zip(x.shape[2:], self.kernel_size))
        return plain and tuple(self.stride) == tuple(self.kernel_size) and set(self.padding) == {0} and tiled

    def _tokens_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same patch embedding as one matmul over patches, returned as a `(B, width, F', h, w)` view of a
        token-major `(B, F', h, w, width)` buffer, so the blocks' `(B, S, width)` tokens are contiguous.

        Why: inductor's CPU code for the first block's bf16 layer-norm backward, reading
        the convolution's channel-major output through diffusers' `flatten(2).transpose(1, 2)`, gives NaN in part
        of the gradient (torch 2.13; correct with `cpp.simdlen=1`, with `aot_eager` and in eager). Under autograd
        with the per-frame modulation (`TrainConfig.fast_paths`) the tokens are made token-major at the source."""
        kt, kh, kw = self.kernel_size
        patches = rearrange(x, "b c (f kt) (h kh) (w kw) -> b f h w (c kt kh kw)", kt=kt, kh=kh, kw=kw)
        tokens = F.linear(patches, self.weight.flatten(1), self.bias)
        return rearrange(tokens, "b f h w c -> b c f h w")


class CachedRope(WanRotaryPosEmbed):
    """Wan's rotary embedding; while sampling, its tables are built once per latent grid (same values)."""

    paths: FastPaths

    def forward(self, hidden_states: torch.Tensor):
        if not self.paths.on("fast_rope"):
            return super().forward(hidden_states)
        key = (tuple(hidden_states.shape[2:]), self.freqs_cos.device, self.freqs_cos.dtype, self.freqs_cos.data_ptr())
        cache = self.__dict__.setdefault("_tables", {})
        if key not in cache:
            cache[key] = super().forward(hidden_states)
        return cache[key]


def _rope_complex(rotary_emb: tuple[torch.Tensor, torch.Tensor], store: dict) -> torch.Tensor:
    """Diffusers' `(cos, sin)` `(1, S, 1, D)` (each pair's value repeated) -> complex64 `(1, S, 1, D/2)`
    `cos + i sin`, cached per table object: rotating pair `(x1, x2)` is the complex product `(x1 + i x2) e^(i a)`."""
    cos, sin = rotary_emb
    hit = store.get("rope")
    if hit is None or hit[0] is not cos or hit[1] is not sin:
        hit = (cos, sin, torch.complex(cos[..., 0::2].float(), sin[..., 1::2].float()))
        store["rope"] = hit
    return hit[2]


def _apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """`(B, S, H, D)` with interleaved pairs -> rotated (diffusers' `x1 cos - x2 sin, x1 sin + x2 cos`), float32."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * freqs).flatten(-2).type_as(x)


def _apply_rope_real(x: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`_apply_rope` in real float32 arithmetic (`x1 cos - x2 sin, x1 sin + x2 cos` per pair), for compiled graphs."""
    cos, sin = rotary_emb[0][..., 0::2].float(), rotary_emb[1][..., 1::2].float()  # (1, S, 1, D/2), as `_rope_complex`
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2).type_as(x)


class FastWanAttnProcessor(WanAttnProcessor):
    """Wan's attention processor with the `fast_rope` and `single_key` paths (`FastPaths.on`); every other case
    (a path off, masks, image context, fused projections, another attention backend) is the stock processor."""

    def __init__(self, paths: FastPaths) -> None:
        super().__init__()
        self.paths = paths
        self._store: dict = {}  # the float32 rope tables of the last grid (shared by every attention module)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        stock = (
            attention_mask is not None
            or attn.add_k_proj is not None
            or attn.fused_projections
            or self._attention_backend is not None
        )
        if stock:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if encoder_hidden_states is not None:
            if encoder_hidden_states.shape[1] == 1 and self.paths.on("single_key"):
                return self._single_key(attn, hidden_states, encoder_hidden_states)
            return super().__call__(attn, hidden_states, encoder_hidden_states, None, None)
        if not (rotary_emb is not None and self.paths.on("fast_rope")):
            return super().__call__(attn, hidden_states, None, None, rotary_emb)
        return self._self(attn, hidden_states, rotary_emb)

    def _self(self, attn, x: torch.Tensor, rotary_emb) -> torch.Tensor:
        """Self-attention: `(B, S, C)` -> `(B, S, C)`."""
        query, key, value = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if torch.compiler.is_compiling():  # inductor has no complex kernels: the same rotation in real arithmetic
            query, key = _apply_rope_real(query, rotary_emb), _apply_rope_real(key, rotary_emb)
        else:
            freqs = _rope_complex(rotary_emb, self._store)
            query, key = _apply_rope(query, freqs), _apply_rope(key, freqs)
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def _single_key(self, attn, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention of `(B, S, C)` queries to ONE context token `(B, 1, C')` -> `(B, S, C)`."""
        value = attn.to_v(context)  # (B, 1, C): softmax over one key is exactly 1, so every query reads v
        out = attn.to_out[1](attn.to_out[0](value.type_as(x)))
        if torch.is_grad_enabled():  # what only fed the skipped query/key gets an exact zero gradient, as in stock
            skipped = [p for m in (attn.to_q, attn.norm_q, attn.to_k, attn.norm_k) for p in m.parameters()]
            out = out + sum((p.sum() for p in skipped if p.requires_grad), x.sum()) * 0.0  # x: e.g. the block's norm2
        return out.expand(-1, x.shape[1], -1)


def frame_modulated_forward(
    block: WanTransformerBlock, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb, rotary_emb
) -> torch.Tensor:
    """Diffusers' `WanTransformerBlock.forward` for per-frame modulation `temb (B, f, 6, C)` and frame-major tokens
    `(B, f * n, C)`: each value goes through the same operations; the per-token table is never built."""
    b, s, c = hidden_states.shape
    f = temb.shape[1]
    mod = block.scale_shift_table.unsqueeze(0) + temb.float()  # (B, f, 6, C)
    shift, scale, gate, c_shift, c_scale, c_gate = (m.unsqueeze(2) for m in mod.unbind(2))  # each (B, f, 1, C)

    def per_frame(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, f, s // f, c)

    norm = (per_frame(block.norm1(hidden_states.float())) * (1 + scale) + shift).reshape(b, s, c)
    attn_output = block.attn1(norm.type_as(hidden_states), None, None, rotary_emb)
    hidden = per_frame(hidden_states.float()) + per_frame(attn_output) * gate
    hidden_states = hidden.reshape(b, s, c).type_as(hidden_states)
    norm = block.norm2(hidden_states.float()).type_as(hidden_states)
    hidden_states = hidden_states + block.attn2(norm, encoder_hidden_states, None, None)
    norm = (per_frame(block.norm3(hidden_states.float())) * (1 + c_scale) + c_shift).reshape(b, s, c)
    ff_output = block.ffn(norm.type_as(hidden_states))
    hidden = per_frame(hidden_states.float()) + per_frame(ff_output.float()) * c_gate
    return hidden.reshape(b, s, c).type_as(hidden_states)


class FrameModulatedBlock(WanTransformerBlock):
    """A Wan block that also accepts per-frame modulation (`temb (B, f, 6, C)` with f < tokens); otherwise stock."""

    def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb):
        if temb.ndim == 4 and temb.shape[1] != hidden_states.shape[1]:
            return frame_modulated_forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb)
        return super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)


def install(transformer: nn.Module, paths: FastPaths) -> None:
    """Swap the Wan transformer's patch embedding, rope and blocks to the subclasses above (parameters, buffers and
    state-dict keys unchanged) and set the fast attention processor; `paths` is shared and switchable later."""
    swaps = [(transformer.patch_embedding, SharedPatchEmbed), (transformer.rope, CachedRope)]
    swaps += [(block, FrameModulatedBlock) for block in transformer.blocks]
    for module, cls in swaps:
        if type(module) is cls.__mro__[1]:  # only the exact stock class (never a user's subclass)
            module.__class__ = cls
            module.paths = paths
    transformer.set_attn_processor(FastWanAttnProcessor(paths))
