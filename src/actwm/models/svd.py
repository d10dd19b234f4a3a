"""Stable Video Diffusion: diffusers `UNetSpatioTemporalConditionModel`.

Assumptions:
- Latents: 4 channels, spatial compression 8, temporal compression 1 (`AutoencoderKLTemporalDecoder`).
- First frame: its latent is concatenated along channels to every noisy frame (UNet input = 2x latent
  channels), its CLIP image embedding is the cross-attention context, and `added_time_ids`
  (fps - 1, motion bucket, noise-augmentation strength) go through `add_embedding`. SVD's pipeline feeds
  the *unscaled* VAE latent as the condition; `cond_scale` undoes the codec's scaling for that.
- Objective: EDM-preconditioned v-prediction (`timestep = 0.25 * log(sigma)`).
- Injection sites: the time embedding is per sample until the UNet repeats it per frame; every down/mid/up
  block's `temb` kwarg (a forward pre-hook) receives the `(batch*frames, 1280)` branch contributions, which
  every res-block projects into its additive shift (`time_emb_proj`). Under the pipeline's classifier-free
  guidance (batch doubled) the contribution is tiled to both halves.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from actwm.models.base import BackboneAdapter
from actwm.models.conditioning import FrameCondition, InjectionSite, tile_batch
from actwm.models.embeddings import clip_pixels

HUB_ID = "stabilityai/stable-video-diffusion-img2vid-xt"


class SVDAdapter(BackboneAdapter):
    family = "svd"
    objective = "edm"
    replaces_first_frame = False

    def __init__(
        self,
        unet: nn.Module,
        image_encoder: nn.Module | None = None,
        cond_scale: float = 1.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
    ) -> None:
        super().__init__(unet)
        self.image_encoder = image_encoder
        if image_encoder is not None:
            image_encoder.requires_grad_(False)
        self.cond_scale = cond_scale
        self.time_ids = (fps - 1, motion_bucket_id, noise_aug_strength)
        cross = unet.config.cross_attention_dim
        cross = cross[0] if isinstance(cross, (list, tuple)) else cross
        # Without an image encoder the cross-attention context is a learned vector (starts at zero).
        self.null_context = None if image_encoder is not None else nn.Parameter(torch.zeros(1, 1, cross))

    @property
    def emb_dim(self) -> int:
        return self.backbone.time_embedding.linear_2.out_features

    def assumptions(self) -> dict[str, str]:
        return dict(
            first_frame="latent concatenated to every frame + CLIP image embedding as cross-attention context",
            objective="edm: EDM-preconditioned v-prediction denoising",
            injection_sites=f"temb of {len(self.sites)} down/mid/up blocks (every res-block's time_emb_proj)",
        )

    @classmethod
    def declare_sites(cls, backbone: nn.Module) -> list[InjectionSite]:
        """The `temb` kwarg of every down, mid and up block."""
        names = [f"down_blocks.{i}" for i in range(len(backbone.down_blocks))] + ["mid_block"]
        names += [f"up_blocks.{i}" for i in range(len(backbone.up_blocks))]
        return [InjectionSite(name, name, "kwarg:temb") for name in names]

    def layout(self, emb: torch.Tensor, target: torch.Tensor, site: InjectionSite, inputs: tuple) -> torch.Tensor:
        """`(b, f, c)` -> `(B*f, c)` rows of `temb` (B = b, or a multiple of it under pipeline guidance)."""
        f = emb.shape[1]
        if target.shape[0] % f:
            raise ValueError(f"SVD {site.name}: temb has {target.shape[0]} rows, not a multiple of {f} frames")
        return rearrange(tile_batch(emb, target.shape[0] // f, f"SVD {site.name}"), "b f c -> (b f) c")

    def extra_parameters(self) -> list[nn.Parameter]:
        return [self.null_context] if self.null_context is not None else []

    def _image_embeds(self, first_frame: torch.Tensor) -> torch.Tensor:
        if self.image_encoder is None:
            return self.null_context.expand(first_frame.shape[0], -1, -1)
        x = clip_pixels(first_frame, self.image_encoder.config.image_size, self.image_encoder.dtype)
        return self.image_encoder(x).image_embeds.unsqueeze(1)

    def condition(self, first_frame: torch.Tensor, first_latent: torch.Tensor) -> FrameCondition:
        b = first_frame.shape[0]
        time_ids = torch.tensor([self.time_ids], dtype=first_latent.dtype, device=first_latent.device)
        return FrameCondition(
            latent=first_latent * self.cond_scale,
            context=self._image_embeds(first_frame),
            time_ids=time_ids.expand(b, -1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: FrameCondition) -> torch.Tensor:
        self.check_latents(x, self.active)
        if t.ndim != 1:
            raise ValueError(f"SVD takes one noise level per sample: t must be (batch,), got {tuple(t.shape)}")
        frames = x.shape[1]
        dtype = self.backbone.dtype
        cond_latent = repeat(cond.latent, "b c h w -> b f c h w", f=frames)
        sample = torch.cat([x, cond_latent], dim=2).to(dtype)
        out = self.backbone(
            sample,
            0.25 * t.float().log(),
            encoder_hidden_states=cond.context.to(dtype),
            added_time_ids=cond.time_ids.to(dtype),
            return_dict=False,
        )[0]
        return out.float()


def tiny_config(latent_channels: int) -> dict:
    """A tiny real SVD UNet config (1.3 M params at 48 latent channels) for CPU tests and the demo."""
    return dict(
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        num_frames=9,
    )


def tiny_image_encoder_config() -> dict:
    """A tiny real CLIP vision tower (transformers `CLIPVisionModelWithProjection`)."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
