"""Fréchet Inception Distance over video frames, without torchvision.

Default network: the FID Inception-v3 of ``mseitzer/pytorch-fid``
(``pt_inception-2015-12-05-6726825d.pth``, TF's 2015 Inception graph ported to torch), re-implemented
in :class:`actwm.eval.backbones.FIDInceptionV3` with its key names and loaded strictly. As pytorch-fid
does, frames in [0, 1] are resized to 299 x 299 (bilinear, ``align_corners=False``, no antialias),
scaled to [-1, 1], and the 2048-d pool3 features are used. All frames of all videos of a set are
pooled; FID is the Fréchet distance between Gaussians fitted to the two sets (float64).

Pluggable extractor: ``FID(feature=module)`` (or ``get_metric("fid", feature=module)``) uses any
``torch.nn.Module`` mapping ``(batch, 3, resize, resize)`` frames in [0, 1] to ``(batch, dim)``
features instead; the number is then "FID under that extractor", not comparable with published FID.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from actwm.eval.backbones import FIDInceptionV3
from actwm.eval.fvd import frechet_distance_features
from actwm.eval.weights import find_weights, load_state_dict, load_strict

FID_FILES = ("pt_inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05.safetensors")
FID_SOURCE = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)


class InceptionFeatures(nn.Module):
    """Wraps :class:`FIDInceptionV3`: frames in [0, 1] -> pool3 features ``(batch, 2048)``."""

    def __init__(self, inception: FIDInceptionV3) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inception(2.0 * frames - 1.0)


class FID:
    """FID between the frames of two sets of videos; ``compute(gt_videos, pred_videos) -> float``."""

    def __init__(self, feature: nn.Module, resize: int | None = 299, batch_size: int = 32) -> None:
        if not isinstance(feature, nn.Module):
            raise ValueError(f"FID feature must be a torch.nn.Module, got {type(feature).__name__}")
        if resize is not None and (not isinstance(resize, int) or resize < 16):
            raise ValueError(f"FID resize must be an int >= 16 or None (299 for the real metric), got {resize!r}")
        self.feature = feature.eval().requires_grad_(False)
        self.resize, self.batch_size = resize, batch_size
        self.device = torch.device("cpu")

    @classmethod
    def from_pretrained(
        cls,
        weights: str | os.PathLike | None = None,
        hub: str | None = None,
        resize: int | None = 299,
        feature: nn.Module | None = None,
        batch_size: int = 32,
    ) -> "FID":
        """The pytorch-fid Inception from ``weights``/``hub``/``$ACTWM_WEIGHTS_DIR``, or ``feature``."""
        if feature is not None:
            if weights is not None or hub is not None:
                raise ValueError("FID: pass either feature= or weights=/hub=, not both")
            return cls(feature, resize=resize, batch_size=batch_size)
        path = find_weights(
            FID_FILES, what="FID Inception-v3 (pytorch-fid)", source=FID_SOURCE, weights=weights, hub=hub
        )
        inception = FIDInceptionV3()
        load_strict(inception, load_state_dict(path), path)
        return cls(InceptionFeatures(inception), resize=resize, batch_size=batch_size)

    def to(self, device: str | torch.device) -> "FID":
        """Run the feature network on ``device``; returns self."""
        self.feature.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def frame_features(self, videos: Sequence[torch.Tensor]) -> torch.Tensor:
        """Features of every frame of every video: ``(total_frames, dim)`` float64."""
        frames = torch.cat([v.float() for v in videos])
        out = []
        for start in range(0, frames.shape[0], self.batch_size):
            batch = frames[start : start + self.batch_size].to(self.device).clamp(0, 1)
            if self.resize is not None and tuple(batch.shape[-2:]) != (self.resize, self.resize):
                batch = F.interpolate(batch, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
            feats = self.feature(batch)
            if feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
                raise ValueError(f"FID feature module must return (batch, dim), got {tuple(feats.shape)}")
            out.append(feats)
        return torch.cat(out).double().cpu()

    def compute(self, gt_videos: Sequence[torch.Tensor], pred_videos: Sequence[torch.Tensor]) -> float:
        """FID between all frames of ``gt_videos`` and all frames of ``pred_videos`` (>= 2 frames each)."""
        return frechet_distance_features(self.frame_features(gt_videos), self.frame_features(pred_videos))
