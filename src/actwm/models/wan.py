"""Wan 2.1 / Wan 2.2 TI2V: diffusers `WanTransformer3DModel`.

Assumptions:
- Latents: the Wan VAE: Wan 2.1 16 channels, spatial 8; Wan 2.2 TI2V 48 channels, spatial 16; both
  temporal k=4, normalised by the VAE's `latents_mean`/`latents_std`.
- First frame: its clean latent replaces latent frame 0 and that frame's tokens get timestep 0 (Wan 2.2
  TI2V's own image-to-video mode). Wan 2.1 1.3B is a text-to-video model; we give it the same
  frame-0 conditioning, learned during fine-tuning.
- Objective: flow matching; input `(1 - t) x0 + t eps`, output the velocity `eps - x0`, `timestep = 1000 t`.
- Injection: per-token timesteps `(batch, tokens)`; a forward hook on
  `condition_embedder.time_embedder` adds the action embedding of each token's frame to `temb`, which
  feeds every block's modulation (`time_proj`) and the output norm.
- Text: cross-attention context is a fixed buffer (zeros = empty prompt after padding); set it with
  `text_context` from an encoded prompt if you want one.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from actwm.models.base import BackboneAdapter, BackboneSpec, Condition

HUB_IDS = {"wan2.1": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan2.2": "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}


class WanAdapter(BackboneAdapter):
    family = "wan"
    objective = "flow"
    replaces_first_frame = True

    def __init__(self, transformer: nn.Module, text_tokens: int = 1) -> None:
        super().__init__(transformer)
        self._tokens_per_frame = 0
        self.register_buffer("text_context", torch.zeros(1, text_tokens, transformer.config.text_dim))

    @property
    def emb_dim(self) -> int:
        return self.backbone.config.num_attention_heads * self.backbone.config.attention_head_dim

    def spec(self, codec: nn.Module) -> BackboneSpec:
        return BackboneSpec(
            family="wan",
            latent_channels=codec.latent_channels,
            spatial_compression=codec.spatial_compression,
            temporal_compression=codec.temporal_compression,
            first_frame="clean latent replaces latent frame 0, whose tokens get timestep 0",
            objective="flow: flow-matching velocity (eps - x0), timestep 1000 t",
            emb_dim=self.emb_dim,
            injection_sites=f"temb -> time_proj of all {len(self.backbone.blocks)} blocks + output norm",
        )

    def _register_hooks(self) -> None:
        def add_to_temb(module: nn.Module, args: tuple, temb: torch.Tensor) -> torch.Tensor | None:
            if self._emb is None:
                return None
            emb = repeat(self._emb, "b f c -> b (f n) c", n=self._tokens_per_frame)
            return temb + emb.to(temb.dtype)

        self._hook(self.backbone.condition_embedder.time_embedder, add_to_temb)

    def condition(self, first_frame: torch.Tensor, first_latent: torch.Tensor) -> Condition:
        b = first_latent.shape[0]
        return {"latent": first_latent, "context": self.text_context.expand(b, -1, -1)}

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_latents(x, self._emb)
        b, f, _, h, w = x.shape
        _, ph, pw = self.backbone.config.patch_size
        self._tokens_per_frame = (h // ph) * (w // pw)
        dtype = self.backbone.dtype
        x = torch.cat([cond["latent"].unsqueeze(1).to(x.dtype), x[:, 1:]], dim=1)
        t_frames = repeat(t.float() * 1000.0, "b -> b f", f=f).clone()
        t_frames[:, 0] = 0.0
        t_tokens = repeat(t_frames, "b f -> b (f n)", n=self._tokens_per_frame)
        out = self.backbone(
            rearrange(x, "b f c h w -> b c f h w").to(dtype),
            timestep=t_tokens,
            encoder_hidden_states=cond["context"].to(dtype),
            return_dict=False,
        )[0]
        return rearrange(out, "b c f h w -> b f c h w").float()


def tiny_config(latent_channels: int) -> dict:
    """A tiny real Wan transformer (2 layers, 2 heads x 32)."""
    return dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=latent_channels,
        out_channels=latent_channels, text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )  # fmt: skip


def wan21_1_3b_config() -> dict:
    """Wan 2.1 T2V 1.3B transformer config."""
    return dict(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )  # fmt: skip


def wan22_ti2v_5b_config() -> dict:
    """Wan 2.2 TI2V 5B transformer config."""
    return dict(
        patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
        text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )  # fmt: skip
