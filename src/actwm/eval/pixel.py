"""Pixel metrics: PSNR and SSIM per frame (torchmetrics functional, ``data_range=1.0``).

Frames are float tensors ``(frames, 3, height, width)`` in [0, 1]. Both metrics return one value per
frame, shape ``(frames,)``.

PSNR of identical frames is infinite in theory; we cap it at :data:`PSNR_CAP_DB` (100 dB, i.e. an MSE of
1e-10), so that per-horizon means stay finite and comparable. The cap is an option (``max_db``).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

PSNR_CAP_DB = 100.0


def psnr_frames(gt: torch.Tensor, pred: torch.Tensor, max_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-frame PSNR in dB, capped at ``max_db``.

    Args:
        gt, pred: ``(frames, 3, height, width)`` in [0, 1].
    Returns:
        ``(frames,)`` float32.
    """
    values = peak_signal_noise_ratio(pred.double(), gt.double(), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return torch.nan_to_num(values, posinf=max_db).clamp(max=max_db).float()


def ssim_frames(gt: torch.Tensor, pred: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """Per-frame SSIM (Gaussian window, sigma 1.5, ``kernel_size`` 11 as in the SSIM paper).

    Args:
        gt, pred: ``(frames, 3, height, width)`` in [0, 1]; height and width >= ``kernel_size``.
    Returns:
        ``(frames,)`` float32.
    """
    height, width = gt.shape[-2:]
    if min(height, width) < kernel_size:
        raise ValueError(f"SSIM needs frames of at least {kernel_size}x{kernel_size} px, got {height}x{width}")
    values = structural_similarity_index_measure(
        pred.float(), gt.float(), data_range=1.0, reduction="none", kernel_size=kernel_size
    )
    return values.reshape(-1).float()
