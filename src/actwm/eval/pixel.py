"""Pixel metrics: PSNR and SSIM per frame, ``data_range=1.0``.

Frames are float tensors ``(frames, 3, height, width)`` in [0, 1]. Both metrics return one value per
frame, shape ``(frames,)``.

SSIM is the standard SSIM of Wang et al. (2004) as scikit-image computes it
(``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
channel_axis=-1)``): local statistics under an 11-tap Gaussian window (sigma 1.5), population covariance,
K1 = 0.01, K2 = 0.03, and the SSIM map averaged over its *valid* region only (windows that lie entirely
inside the image; no padded border) and over the channels. torchmetrics instead averages a map that
includes a reflect-padded border of 5 px, which at 32 px is 53% of the pixels.

PSNR of identical frames is infinite in theory; we cap it at :data:`PSNR_CAP_DB` (100 dB, i.e. an MSE of
1e-10), so that per-horizon means stay finite and comparable. The cap is an option (``max_db``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

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


def gaussian_window(kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps `(kernel_size,)` float64, centred (scipy's `gaussian_filter` weights)."""
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim_frames(gt: torch.Tensor, pred: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-frame SSIM over the valid region (see the module docstring), in float64.

    Args:
        gt, pred: ``(frames, 3, height, width)`` in [0, 1]; height and width >= ``kernel_size``.
        kernel_size: odd Gaussian window size (11 as in the SSIM paper); sigma: its standard deviation.
    Returns:
        ``(frames,)`` float32.
    """
    height, width = gt.shape[-2:]
    if min(height, width) < kernel_size:
        raise ValueError(f"SSIM needs frames of at least {kernel_size}x{kernel_size} px, got {height}x{width}")
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"SSIM kernel_size must be odd and >= 3, got {kernel_size}")
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2  # K1, K2 at data_range 1
    x, y = gt.double(), pred.double()
    channels = x.shape[1]
    w = gaussian_window(kernel_size, sigma).to(x.device)
    w_rows = w.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    w_cols = w.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid positions only (no padding)
        return F.conv2d(F.conv2d(z, w_rows, groups=channels), w_cols, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2  # population (biased) covariances
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).float()  # valid region, then channels (equal sizes: one mean)
