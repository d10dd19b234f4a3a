"""Codecs between pixel video and the latent space a backbone denoises.

Every codec maps `(batch, frames, 3, height, width)` pixels in [-1, 1] to normalised latents
`(batch, latent_frames, latent_channels, height // s, width // s)` with `latent_frames = 1 + (frames-1)//k`
and back. Three kinds:

- `PixelCodec`: exact, weight-free space-to-depth (spatial factor s) and causal frame grouping
  (temporal factor k, frame 0 alone). The `tiny` presets use it so a laptop can train a real diffusers
  backbone without first training a VAE; it mirrors the real VAEs' shapes and frame rule.
- `SVDVaeCodec`: diffusers `AutoencoderKLTemporalDecoder` (SVD), k=1, s=8, 4 channels, latents * 0.18215.
- `WanVaeCodec`: diffusers `AutoencoderKLWan` (Wan 2.1/2.2, also Cosmos-Predict2), k=4, s=8 (16 for
  Wan 2.2), latents normalised by the config's `latents_mean`/`latents_std` (times `sigma_data` for Cosmos).
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn


def check_video(video: torch.Tensor, k: int, s: int, what: str = "video") -> None:
    """Raise ValueError unless `video` is `(batch, 1 + k*n, 3, H, W)` with H, W divisible by s."""
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"{what} must be (batch, frames, 3, height, width), got shape {tuple(video.shape)}")
    t, h, w = video.shape[1], video.shape[3], video.shape[4]
    if (t - 1) % k:
        raise ValueError(f"{what} has {t} frames; with temporal compression k={k} the count must be 1 + {k}*n")
    if h % s or w % s:
        raise ValueError(f"{what} is {h}x{w} pixels; height and width must be multiples of {s}")


class Codec(nn.Module):
    """Base class. Subclasses set the three compression attributes and implement encode/decode."""

    latent_channels: int
    spatial_compression: int
    temporal_compression: int

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """`(latent_frames, channels, h, w)` for a pixel video of the given size."""
        k, s = self.temporal_compression, self.spatial_compression
        return 1 + (frames - 1) // k, self.latent_channels, height // s, width // s

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class PixelCodec(Codec):
    """Exact space-to-depth codec: `latent_channels = 3 * s * s * k`.

    encode `(b, 1 + k*n, 3, H, W)` -> `(b, 1 + n, 3*s*s*k, H/s, W/s)`; frame 0 is repeated k times to
    fill its group (as causal video VAEs do). decode inverts exactly (frame 0 = mean of its copies).
    """

    def __init__(self, spatial: int = 4, temporal: int = 1) -> None:
        super().__init__()
        if spatial < 1 or temporal < 1:
            raise ValueError(f"PixelCodec: spatial and temporal factors must be >= 1, got {spatial}, {temporal}")
        self.spatial_compression, self.temporal_compression = spatial, temporal
        self.latent_channels = 3 * spatial * spatial * temporal

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        k, s = self.temporal_compression, self.spatial_compression
        check_video(video, k, s)
        video = torch.cat([repeat(video[:, :1], "b 1 c h w -> b r c h w", r=k - 1), video], dim=1)
        return rearrange(video, "b (f k) c (h s1) (w s2) -> b f (k c s1 s2) h w", k=k, s1=s, s2=s)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        k, s = self.temporal_compression, self.spatial_compression
        video = rearrange(latents, "b f (k c s1 s2) h w -> b (f k) c (h s1) (w s2)", k=k, s1=s, s2=s, c=3)
        first = video[:, :k].mean(dim=1, keepdim=True)
        return torch.cat([first, video[:, k:]], dim=1)


class SVDVaeCodec(Codec):
    """Stable Video Diffusion's `AutoencoderKLTemporalDecoder` (image encoder, temporal decoder)."""

    def __init__(self, vae: nn.Module, decode_chunk: int = 8) -> None:
        super().__init__()
        self.vae = vae
        self.latent_channels = int(vae.config.latent_channels)
        self.spatial_compression = 2 ** (len(vae.config.block_out_channels) - 1)
        self.temporal_compression = 1
        self.scaling = float(vae.config.scaling_factor)
        self.decode_chunk = decode_chunk

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        check_video(video, 1, self.spatial_compression)
        b = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w").to(self.vae.dtype)
        z = self.vae.encode(frames).latent_dist.mode() * self.scaling
        return rearrange(z, "(b t) c h w -> b t c h w", b=b)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, f = latents.shape[:2]
        flat = rearrange(latents, "b f c h w -> (b f) c h w").to(self.vae.dtype) / self.scaling
        outs = []
        for i in range(0, flat.shape[0], self.decode_chunk * 1):
            chunk = flat[i : i + self.decode_chunk]
            outs.append(self.vae.decode(chunk, num_frames=chunk.shape[0]).sample)
        return rearrange(torch.cat(outs), "(b f) c h w -> b f c h w", b=b, f=f)


class WanVaeCodec(Codec):
    """The Wan VAE (`AutoencoderKLWan`), used by Wan 2.1/2.2 and Cosmos-Predict2.

    Latents are `(z - latents_mean) / latents_std * sigma_data` (sigma_data = 1 for Wan and Cosmos-Predict2).
    """

    def __init__(self, vae: nn.Module, sigma_data: float = 1.0) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.latent_channels = int(cfg.z_dim)
        self.temporal_compression = int(getattr(cfg, "scale_factor_temporal", 2 ** sum(cfg.temperal_downsample)))
        self.spatial_compression = int(getattr(cfg, "scale_factor_spatial", 2 ** len(cfg.temperal_downsample)))
        self.register_buffer("mean", torch.tensor(cfg.latents_mean).view(1, 1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.latents_std).view(1, 1, -1, 1, 1), persistent=False)
        self.sigma_data = sigma_data

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        check_video(video, self.temporal_compression, self.spatial_compression)
        x = rearrange(video, "b t c h w -> b c t h w").to(self.vae.dtype)
        z = rearrange(self.vae.encode(x).latent_dist.mode(), "b c f h w -> b f c h w").float()
        return (z - self.mean) / self.std * self.sigma_data

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.sigma_data * self.std + self.mean
        x = self.vae.decode(rearrange(z, "b f c h w -> b c f h w").to(self.vae.dtype)).sample
        return rearrange(x, "b c t h w -> b t c h w").float()
