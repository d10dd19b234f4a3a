"""Cosmos-Predict2 Video2World: diffusers `CosmosTransformer3DModel`.

Assumptions:
- Latents: the Wan VAE (16 channels, spatial 8, temporal k=4), normalised with `sigma_data`.
- First frame: its clean latent replaces latent frame 0, a condition-mask channel marks it, and it gets
  its own tiny timestep `sigma_cond / (1 + sigma_cond)` (sigma_cond = 1e-4), as the Video2World pipeline does.
  The padding-mask channel (all zeros for unpadded video) is appended here rather than by the model, so the
  forward pass needs no torchvision.
- Objective: rectified flow; input `(1 - t) x0 + t eps`, output the velocity `eps - x0`, `timestep = t`.
- Injection site: per-frame timesteps `(batch, 1, frames, 1, 1)` (ours and `Cosmos2VideoToWorldPipeline`'s);
  `time_embed`'s output `embedded_timestep` (a forward hook) receives the branch contributions, from which
  every block's AdaLN-Zero (and the output norm) computes shift/scale/gate.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from actwm.models.base import BackboneAdapter
from actwm.models.conditioning import FrameCondition, InjectionSite, tile_batch

HUB_ID = "nvidia/Cosmos-Predict2-2B-Video2World"
SIGMA_COND = 1e-4


class CosmosAdapter(BackboneAdapter):
    family = "cosmos"
    objective = "flow"
    replaces_first_frame = True

    def __init__(self, transformer: nn.Module, text_tokens: int = 1, fps: int = 16) -> None:
        self._pad_channel = bool(transformer.config.concat_padding_mask)
        if self._pad_channel:  # we append the zero padding channel ourselves (no torchvision resize)
            transformer.register_to_config(concat_padding_mask=False)
        super().__init__(transformer)
        self.fps = fps
        self.register_buffer("text_context", torch.zeros(1, text_tokens, transformer.config.text_embed_dim))

    @property
    def emb_dim(self) -> int:
        return self.backbone.config.num_attention_heads * self.backbone.config.attention_head_dim

    def assumptions(self) -> dict[str, str]:
        return dict(
            first_frame="clean latent replaces latent frame 0, condition-mask channel, own timestep sigma=1e-4",
            objective="flow: rectified-flow velocity (eps - x0), timestep t in [0, 1]",
            injection_sites=f"embedded_timestep -> AdaLN-Zero of all {len(self.backbone.transformer_blocks)} "
            "blocks + norm_out",
        )

    @classmethod
    def declare_sites(cls, backbone: nn.Module) -> list[InjectionSite]:
        """`time_embed` -> `embedded_timestep`, shared by every block's AdaLN-Zero and `norm_out`."""
        return [InjectionSite("time_embed.embedded_timestep", "time_embed", "output[1]")]

    def layout(self, emb: torch.Tensor, target: torch.Tensor, site: InjectionSite, inputs: tuple) -> torch.Tensor:
        """`(b, f, c)` -> `(B*f, c)`: per-frame timesteps embed one row per (sample, frame)."""
        f, batch = emb.shape[1], inputs[0].shape[0]  # time_embed(hidden_states (B, tokens, C), timestep)
        if target.ndim != 2 or target.shape[0] != batch * f:
            raise ValueError(
                f"Cosmos {site.name}: per-frame conditioning of {f} latent frames needs per-frame timesteps "
                f"(batch, 1, frames, 1, 1); the timestep embedding has shape {tuple(target.shape)} for batch {batch}"
            )
        return rearrange(tile_batch(emb, batch, f"Cosmos {site.name}"), "b f c -> (b f) c")

    def condition(self, first_frame: torch.Tensor, first_latent: torch.Tensor) -> FrameCondition:
        b = first_latent.shape[0]
        return FrameCondition(latent=first_latent, context=self.text_context.expand(b, -1, -1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition) -> torch.Tensor:
        self.check_latents(x, self.active)
        b, f, _, h, w = x.shape
        dtype = self.backbone.dtype
        x = torch.cat([cond.latent.unsqueeze(1).to(x.dtype), x[:, 1:]], dim=1)
        is_cond = torch.zeros(1, f, 1, 1, 1, device=x.device, dtype=x.dtype)
        is_cond[:, 0] = 1.0
        t_frames = repeat(t.float(), "b -> b f", f=f).clone()
        t_frames[:, 0] = SIGMA_COND / (1 + SIGMA_COND)
        channels = [x, is_cond.expand(b, f, 1, h, w)]
        if self._pad_channel:
            channels.append(torch.zeros(b, f, 1, h, w, device=x.device, dtype=x.dtype))
        hidden = rearrange(torch.cat(channels, dim=2), "b f c h w -> b c f h w").to(dtype)
        out = self.backbone(
            hidden,
            timestep=rearrange(t_frames, "b f -> b 1 f 1 1").to(dtype),
            encoder_hidden_states=cond.context.to(dtype),
            fps=self.fps,
            return_dict=False,
        )[0]
        return rearrange(out, "b c f h w -> b f c h w").float()


def tiny_config(latent_channels: int) -> dict:
    """A tiny real Cosmos transformer (2 layers, 2 heads x 32): Predict2-2B's layout (its 1x2x2 patch, no extra
    positional embedding) at toy sizes, without the padding-mask channel."""
    return dict(
        predict2_2b_config(),
        in_channels=latent_channels + 1,
        out_channels=latent_channels,
        num_attention_heads=2,
        attention_head_dim=32,
        num_layers=2,
        mlp_ratio=2.0,
        text_embed_dim=32,
        adaln_lora_dim=16,
        max_size=(32, 128, 128),
        rope_scale=(1.0, 1.0, 1.0),
        concat_padding_mask=False,
    )


def predict2_2b_config() -> dict:
    """Cosmos-Predict2-2B-Video2World transformer config (for meta-device sizing and from-config builds)."""
    return dict(
        in_channels=16 + 1,
        out_channels=16,
        num_attention_heads=16,
        attention_head_dim=128,
        num_layers=28,
        mlp_ratio=4.0,
        text_embed_dim=1024,
        adaln_lora_dim=256,
        max_size=(128, 240, 240),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    )
