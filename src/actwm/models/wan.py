"""Wan 2.1 / Wan 2.2 TI2V: diffusers `WanTransformer3DModel`.

Assumptions:
- Latents: the Wan VAE: Wan 2.1 16 channels, spatial 8; Wan 2.2 TI2V 48 channels, spatial 16; both
  temporal k=4, normalised by the VAE's `latents_mean`/`latents_std`.
- First frame, chosen by the transformer's channels, as the official checkpoints do:
  - `in_channels == out_channels` (Wan 2.1 T2V, Wan 2.2 TI2V): the clean latent replaces latent frame 0
    and that frame's tokens get timestep 0 (Wan 2.2 TI2V's own image-to-video mode). Wan 2.1 1.3B is a
    text-to-video model; it learns this frame-0 conditioning during fine-tuning.
  - `in_channels == 2 * out_channels + k` (Wan 2.1 I2V: 36 = 16 + 4 + 16): channel concatenation. Every
    latent frame gets `[noisy latent, k mask channels (1 on latent frame 0), latent of the video
    (first frame, then grey frames)]`; all frames are generated at one timestep. A transformer with
    `image_dim` (the 14B I2V) also cross-attends to the first frame's CLIP penultimate hidden states.
- Objective: flow matching; input `(1 - t) x0 + t eps`, output the velocity `eps - x0`, `timestep = 1000 t`.
- Injection site: `condition_embedder.time_embedder`'s output `temb` (a forward hook) receives each token's
  frame's branch contributions; `temb` feeds every block's modulation (`time_proj`) and the output norm.
  This needs per-token timesteps `(batch, tokens)`: ours, and `WanPipeline` / `WanImageToVideoPipeline` with
  `expand_timesteps=True`. Their default per-sample timesteps `(batch,)` are broadcast to the tokens by a
  forward pre-hook on the transformer while a conditioning is active (same values, per-token layout), so a
  wrapped transformer drops into those pipelines in every timestep mode.
- Text: cross-attention context is a fixed buffer (zeros = empty prompt after padding); set it with
  `text_context` from an encoded prompt if you want one.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from actwm.models.base import BackboneAdapter
from actwm.models.conditioning import FrameCondition, InjectionSite, tile_batch
from actwm.models.embeddings import clip_pixels
from actwm.models.wan_fast import FastPaths, FrameModulatedBlock, SharedPatchEmbed, install

HUB_IDS = {
    "wan2.1": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "wan2.2": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "wan2.1-i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
}
I2V_TEXT_TOKENS = 512  # the padded UMT5 context length Wan's image cross-attention assumes


class WanAdapter(BackboneAdapter):
    family = "wan"
    objective = "flow"

    def __init__(self, transformer: nn.Module, text_tokens: int = 1, image_encoder: nn.Module | None = None) -> None:
        super().__init__(transformer)
        cfg = transformer.config
        self.fast = FastPaths()  # inference fast paths (actwm.models.wan_fast), switchable: adapter.fast.NAME = False
        install(transformer, self.fast)
        self._frame_blocks = all(isinstance(b, FrameModulatedBlock) for b in transformer.blocks)
        self._broadcast = 0  # tokens per frame while a call's per-sample timesteps are broadcast by us, else 0
        self._temb_sample: torch.Tensor | None = None  # that call's per-sample time embedding (B, C)
        transformer.register_forward_pre_hook(self._per_token_timesteps, with_kwargs=True)
        transformer.register_forward_hook(self._end_call)
        transformer.condition_embedder.time_proj.register_forward_hook(self._exact_time_proj)
        self._tail: tuple | None = None  # (padded, dtype, batch, [mask, padded]): the last concat condition's tail
        self._frame_tokens = 0  # tokens per latent frame while our forward embeds the time per frame, else 0
        transformer.condition_embedder.time_embedder.register_forward_pre_hook(self._frame_rows)
        transformer.condition_embedder.register_forward_hook(self._spread_frames)
        self.concat_condition = cfg.in_channels != cfg.out_channels
        self.mask_channels = cfg.in_channels - 2 * cfg.out_channels if self.concat_condition else 0
        if self.concat_condition and self.mask_channels < 1:
            raise ValueError(
                f"Wan transformer in_channels={cfg.in_channels}, out_channels={cfg.out_channels}: expected equal "
                f"(frame-0 replacement) or in = 2 * out + k mask channels (channel-concat image-to-video)"
            )
        self.replaces_first_frame = not self.concat_condition
        if cfg.get("image_dim") is not None and image_encoder is None:
            raise ValueError(
                f"this Wan transformer cross-attends to CLIP image features (image_dim={cfg.image_dim}): provide its "
                f"image encoder (the pipeline's image_encoder/ folder, a CLIPVisionModel)"
            )
        if cfg.get("image_dim") is not None and text_tokens != I2V_TEXT_TOKENS:
            raise ValueError(
                f"a Wan transformer with image cross-attention splits its context as [image, {I2V_TEXT_TOKENS} text "
                f"tokens] (diffusers hard-codes 512): set text_tokens={I2V_TEXT_TOKENS}, got {text_tokens}"
            )
        self.image_encoder = image_encoder
        if image_encoder is not None:
            image_encoder.requires_grad_(False)
        self.register_buffer("text_context", torch.zeros(1, text_tokens, cfg.text_dim))

    @property
    def emb_dim(self) -> int:
        return self.backbone.config.num_attention_heads * self.backbone.config.attention_head_dim

    def assumptions(self) -> dict[str, str]:
        return dict(
            first_frame=(
                f"channel concat: [noisy, {self.mask_channels} mask channels, latent of (first frame, grey frames)]"
                if self.concat_condition
                else "clean latent replaces latent frame 0, whose tokens get timestep 0"
            ),
            objective="flow: flow-matching velocity (eps - x0), timestep 1000 t",
            injection_sites=f"temb -> time_proj of all {len(self.backbone.blocks)} blocks + output norm",
        )

    @classmethod
    def declare_sites(cls, backbone: nn.Module) -> list[InjectionSite]:
        """`time_embedder` -> `temb`, shared by every block's modulation and the output norm."""
        return [InjectionSite("condition_embedder.time_embedder", "condition_embedder.time_embedder", "output")]

    def layout(self, emb: torch.Tensor, target: torch.Tensor, site: InjectionSite, inputs: tuple) -> torch.Tensor:
        """`(b, f, c)` -> `(B, tokens, c)`: each token gets its latent frame's row (tokens are frame-major)."""
        f = emb.shape[1]
        if target.ndim != 3 or target.shape[1] % f:
            raise ValueError(
                f"Wan {site.name}: per-frame conditioning of {f} latent frames needs per-token timesteps; "
                f"temb has shape {tuple(target.shape)}"
            )
        emb = tile_batch(emb, target.shape[0], f"Wan {site.name}")
        if target.shape[1] == f:  # our forward: the time embedding is computed per latent frame
            return emb
        return repeat(emb, "b f c -> b (f n) c", n=target.shape[1] // f)

    def _per_token_timesteps(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        """Transformer pre-hook: per-sample timesteps `(B,)` -> `(B, tokens)` while a conditioning is active.

        Per-token timesteps `(B, S)` (ours, `expand_timesteps=True`) must have one per token: a pipeline that
        assumes another patch size (WanImageToVideoPipeline's expand mode assumes 2x2) gets a clear error.
        """
        self._broadcast, self._temb_sample = 0, None
        if self.active is None or not self.active.branches:
            return None
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        pt, ph, pw = module.config.patch_size
        _, _, f, h, w = hidden.shape
        tokens = (f // pt) * (h // ph) * (w // pw)
        if timestep.ndim == 2 and timestep.shape[1] != tokens:
            raise ValueError(
                f"Wan: got per-token timesteps for {timestep.shape[1]} tokens, but the transformer (patch {pt}x{ph}x"
                f"{pw}) makes {tokens}; diffusers' expand_timesteps mode assumes a 2x2 spatial patch"
            )
        if timestep.ndim != 1:
            return None
        self._broadcast = tokens // (f // pt)
        timestep = repeat(timestep.expand(hidden.shape[0]), "b -> b n", n=tokens)
        if "timestep" in kwargs:
            return args, dict(kwargs, timestep=timestep)
        return (args[0], timestep, *args[2:]), kwargs

    def _end_call(self, module: nn.Module, args: tuple, output: object) -> None:
        self._broadcast, self._temb_sample = 0, None

    def _frame_rows(self, module: nn.Module, args: tuple) -> tuple | None:
        """time_embedder pre-hook in our forward: `(B, S, freq)` sinusoids -> `(B, f, freq)`, one row per latent
        frame (its tokens share the timestep), so the time MLP and `time_proj` run on `f` rows instead of `S`."""
        if not self._frame_tokens or args[0].ndim != 3:
            return None
        return (args[0][:, :: self._frame_tokens],)

    def _spread_frames(self, module: nn.Module, args: tuple, output: tuple) -> tuple | None:
        """condition_embedder hook in our forward: per-frame `temb (B, f, C)` and `timestep_proj (B, f, 6C)` ->
        per token `(B, S, ...)`, the layout the blocks and the output norm expect (a view when f = 1)."""
        if not self._frame_tokens or output[0].ndim != 3:
            return None
        n = self._frame_tokens

        def spread(x: torch.Tensor) -> torch.Tensor:
            b, f, c = x.shape
            return x.unsqueeze(2).expand(b, f, n, c).reshape(b, f * n, c)  # "b f c -> b (f n) c"

        per_frame = self._frame_blocks and self.fast.on("frame_modulation")
        return (spread(output[0]), output[1] if per_frame else spread(output[1]), *output[2:])

    def apply_output(
        self, site: InjectionSite, module: nn.Module, inputs: tuple, target: torch.Tensor, add: torch.Tensor
    ) -> torch.Tensor:
        """In a broadcast call, the time embedding is computed on the per-sample rows (as the bare backbone does,
        bit for bit) and then spread over the tokens."""
        if not self._broadcast:
            return target + add
        self._temb_sample = module.forward(inputs[0][:, 0])  # (B, C): forward() skips this hook
        return self._temb_sample.unsqueeze(1).to(target.dtype) + add

    def _exact_time_proj(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """time_proj hook in a broadcast call: the bare per-sample projection plus the (per-frame) change the
        branches make, so zero contributions leave the modulation bit-identical to the bare backbone's."""
        if not self._broadcast or self._temb_sample is None:
            return None
        n, x = self._broadcast, args[0]  # (B, S, C) = act(temb + contributions)
        frames = x[:, ::n]  # (B, f, C): tokens of a frame share their row
        base = self.backbone.condition_embedder.act_fn(self._temb_sample.to(x.dtype))  # (B, C)
        bare = module.forward(base)  # (B, 6C), the bare backbone's GEMM
        delta = module.forward(frames) - module.forward(repeat(base, "b c -> b f c", f=frames.shape[1]))
        return repeat(bare.unsqueeze(1) + delta, "b f c -> b (f n) c", n=n)

    def condition(
        self, first_frame: torch.Tensor, first_latent: torch.Tensor, padded_latents: torch.Tensor | None = None
    ) -> FrameCondition:
        """`padded_latents` `(b, f, C, h, w)`: the codec's latents of (first frame, grey frames...), needed
        (and only used) by channel-concat transformers."""
        b = first_latent.shape[0]
        if self.concat_condition and padded_latents is None:
            raise ValueError(
                "a channel-concat Wan transformer needs padded_latents (the first frame's padded video latents)"
            )
        return FrameCondition(
            latent=first_latent,
            context=self.text_context.expand(b, -1, -1),
            padded=padded_latents if self.concat_condition else None,
            image=clip_hidden_states(self.image_encoder, first_frame) if self.image_encoder is not None else None,
        )

    def _concat_input(self, x: torch.Tensor, cond: FrameCondition) -> torch.Tensor:
        """`(b, f, C, h, w)` noisy latents -> `(b, f, 2C + k, h, w)` [noisy, mask, padded condition]."""
        padded = cond.padded
        if padded.shape[1] != x.shape[1]:
            raise ValueError(f"condition has {padded.shape[1]} latent frames, the noisy latents {x.shape[1]}")
        key = (padded, x.dtype, x.shape[0])  # the same condition at every sampler step: build its tail once
        if self._tail is None or self._tail[0] is not padded or self._tail[1:3] != key[1:]:
            b, f, _, h, w = x.shape
            mask = torch.zeros(b, f, self.mask_channels, h, w, dtype=x.dtype, device=x.device)
            mask[:, 0] = 1.0
            self._tail = (*key, torch.cat([mask, padded.to(x.dtype)], dim=2))
        return torch.cat([x, self._tail[3]], dim=2)

    def forward_copies(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition, copies: int) -> torch.Tensor:
        """As the base class; the identical copies' patch embedding is computed once (`FastPaths.shared_patch`)."""
        embed = self.backbone.patch_embedding
        if not isinstance(embed, SharedPatchEmbed):
            return super().forward_copies(x, t, cond, copies)
        embed.copies = copies
        try:
            return super().forward_copies(x, t, cond, copies)
        finally:
            embed.copies = 1

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition) -> torch.Tensor:
        self.check_latents(x, self.active)
        b, f, _, h, w = x.shape
        _, ph, pw = self.backbone.config.patch_size
        tokens_per_frame = (h // ph) * (w // pw)
        dtype = self.backbone.patch_embedding.weight.dtype  # (ModelMixin.dtype walks every module per call)
        t_frames = repeat(t.float() * 1000.0, "b -> b f", f=f).clone()
        if self.concat_condition:
            x = self._concat_input(x, cond)
        else:
            x = torch.cat([cond.latent.unsqueeze(1).to(x.dtype), x[:, 1:]], dim=1)
            t_frames[:, 0] = 0.0
        t_tokens = repeat(t_frames, "b f -> b (f n)", n=tokens_per_frame)
        extra = {"encoder_hidden_states_image": cond.image.to(dtype)} if cond.image is not None else {}
        self._frame_tokens = tokens_per_frame if self.backbone.config.patch_size[0] == 1 else 0
        try:
            out = self.backbone(
                rearrange(x, "b f c h w -> b c f h w").to(dtype),
                timestep=t_tokens,
                encoder_hidden_states=cond.context.to(dtype),
                return_dict=False,
                **extra,
            )[0]
        finally:
            self._frame_tokens = 0
        return rearrange(out, "b c f h w -> b f c h w").float()


def clip_hidden_states(image_encoder: nn.Module, first_frame: torch.Tensor) -> torch.Tensor:
    """`(b, 3, H, W)` frames in [-1, 1] -> `(b, tokens, width)` CLIP penultimate hidden states, as Wan I2V uses.

    Resizes to the encoder's image size (bicubic) and applies CLIP's mean/std, like `CLIPImageProcessor`.
    """
    x = clip_pixels(first_frame, image_encoder.config.image_size, image_encoder.dtype)
    return image_encoder(pixel_values=x, output_hidden_states=True).hidden_states[-2]


# What every Wan transformer here shares with the official checkpoints: the 1x2x2 patch and the normalisation layout.
_LAYOUT = dict(patch_size=(1, 2, 2), cross_attn_norm=True, qk_norm="rms_norm_across_heads")
# What the released checkpoints (1.3B, 5B, 14B) share on top: head width, UMT5 text width, time embedding, RoPE.
_RELEASED = dict(_LAYOUT, attention_head_dim=128, text_dim=4096, freq_dim=256, eps=1e-6, rope_max_seq_len=1024)


def tiny_config(latent_channels: int, concat_mask: int = 0) -> dict:
    """A tiny real Wan transformer (2 layers, 2 heads x 32); `concat_mask` = k makes it a channel-concat
    image-to-video transformer like Wan 2.1 I2V (in_channels = 2 * latent_channels + k)."""
    in_channels = 2 * latent_channels + concat_mask if concat_mask else latent_channels
    return dict(
        _LAYOUT,
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=in_channels,
        out_channels=latent_channels,
        text_dim=32,
        freq_dim=32,
        ffn_dim=128,
        num_layers=2,
        rope_max_seq_len=64,
    )


def wan21_1_3b_config() -> dict:
    """Wan 2.1 T2V 1.3B transformer config."""
    return dict(_RELEASED, num_attention_heads=12, in_channels=16, out_channels=16, ffn_dim=8960, num_layers=30)


def wan22_ti2v_5b_config() -> dict:
    """Wan 2.2 TI2V 5B transformer config."""
    return dict(_RELEASED, num_attention_heads=24, in_channels=48, out_channels=48, ffn_dim=14336, num_layers=30)


def wan21_i2v_14b_config() -> dict:
    """Wan 2.1 I2V 14B (480P) transformer config: channel-concat first frame + CLIP image cross-attention."""
    return dict(
        _RELEASED,
        num_attention_heads=40,
        in_channels=36,
        out_channels=16,
        ffn_dim=13824,
        num_layers=40,
        image_dim=1280,
        added_kv_proj_dim=5120,
    )
