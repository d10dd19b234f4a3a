"""Metric registry: one entry point, ``get_metric(name, **options)``, for every image/video metric.

Two kinds of metric objects come back; both carry ``.name``, ``.higher_is_better`` and ``.kind``:

* ``kind == "frame"`` (psnr, ssim, lpips, dreamsim, controllability): ``m(gt, pred) -> Tensor (frames,)``
  with ``gt`` and ``pred`` float ``(frames, 3, height, width)`` in [0, 1] and identical shapes.
* ``kind == "set"`` (fvd, fid): ``m(gt_videos, pred_videos) -> float`` over lists of such videos.
* ``kind == "sequence"`` (traj, depth): ``m.score_pair(pair, context, horizons)`` on a whole
  ``SequencePair`` (frames and side data); see :mod:`actwm.eval.trajectory_metric`, :mod:`actwm.eval.depth_accuracy`.

Options (keyword arguments of :func:`get_metric`):

* all: ``resize: int | None`` -- resize frames to ``resize x resize`` (bilinear, antialiased) before
  measuring, e.g. 224 as NWM and EgoWM do. Default ``None`` (native size) for frame metrics; the
  network input sizes for fvd (224) and fid (299). Network metrics also take ``device`` (default CPU)
  and ``batch_size``.
* psnr: ``max_db`` (cap for identical frames, default 100 dB). ssim: ``kernel_size`` (default 11).
* lpips / controllability: ``net`` ("alex" | "vgg"), ``weights`` (torchvision backbone checkpoint),
  ``heads`` (LPIPS linear heads, default: the file shipped in the ``lpips`` package).
* dreamsim, fvd, fid: ``weights`` (file or directory) and ``hub`` (Hugging Face repo id).
  fvd: ``feature`` ("logits", 400-d as the original FVD, or "pool", 1024-d). fid: ``feature`` (a
  ``torch.nn.Module`` mapping frames in [0, 1] to ``(batch, dim)``, replacing the Inception network).

Networks need weight files that cannot be bundled; constructing a metric whose weights are missing
raises :class:`FileNotFoundError` naming the file(s), where to get them, and the directories searched
(``$ACTWM_WEIGHTS_DIR``, default ``~/.cache/actwm/weights``). See :mod:`actwm.eval.weights`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from actwm.eval import pixel
from actwm.eval.depth_accuracy import build_depth
from actwm.eval.dreamsim import DreamSim
from actwm.eval.fid import FID
from actwm.eval.fvd import FVD
from actwm.eval.lpips import LPIPS
from actwm.eval.trajectory_metric import build_traj

MetricKind = Literal["frame", "set"]


def resize_frames(frames: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize ``(frames, 3, H, W)`` to ``(frames, 3, size, size)`` (bilinear, antialiased); None = keep."""
    if size is None or tuple(frames.shape[-2:]) == (size, size):
        return frames
    out = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0)


def check_video(video: Any, what: str) -> torch.Tensor:
    """Validate one video: a floating tensor ``(frames, 3, height, width)``; returns it as float32."""
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor (frames, 3, H, W), got {type(video).__name__}")
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"{what}: expected shape (frames, 3, H, W), got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"{what}: expected a float tensor in [0, 1], got dtype {video.dtype}")
    if video.shape[0] == 0:
        raise ValueError(f"{what}: video has no frames")
    return video.float()


def check_pair(gt: Any, pred: Any, what: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ground-truth/prediction pair of videos with identical shapes."""
    prefix = f"{what}: " if what else ""
    gt = check_video(gt, f"{prefix}gt")
    pred = check_video(pred, f"{prefix}pred")
    if gt.shape != pred.shape:
        raise ValueError(f"{prefix}gt and pred shapes differ: gt {tuple(gt.shape)} vs pred {tuple(pred.shape)}")
    return gt, pred


@dataclass
class FrameMetric:
    """A per-frame metric: ``m(gt, pred) -> Tensor (frames,)`` (see module docstring)."""

    name: str
    higher_is_better: bool
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(repr=False)
    resize: int | None = None
    batch_size: int = 16
    device: str | None = None
    kind: MetricKind = field(default="frame", init=False)

    def __post_init__(self) -> None:
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize < 8):
            raise ValueError(f"{self.name}: resize must be an int >= 8 or None, got {self.resize!r}")
        if self.batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {self.batch_size}")

    @torch.no_grad()
    def __call__(self, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        gt, pred = check_pair(gt, pred, self.name)
        if self.device is not None:
            gt, pred = gt.to(self.device), pred.to(self.device)
        gt, pred = resize_frames(gt, self.resize), resize_frames(pred, self.resize)
        chunks = [
            self.fn(gt[i : i + self.batch_size], pred[i : i + self.batch_size]).reshape(-1)
            for i in range(0, gt.shape[0], self.batch_size)
        ]
        return torch.cat(chunks).float().cpu()


@dataclass
class SetMetric:
    """A distribution metric over sets of videos: ``m(gt_videos, pred_videos) -> float``."""

    name: str
    higher_is_better: bool
    fn: Callable[[list[torch.Tensor], list[torch.Tensor]], float] = field(repr=False)
    kind: MetricKind = field(default="set", init=False)

    @torch.no_grad()
    def __call__(self, gt_videos: list[torch.Tensor], pred_videos: list[torch.Tensor]) -> float:
        for what, videos in (("gt_videos", gt_videos), ("pred_videos", pred_videos)):
            if not isinstance(videos, (list, tuple)) or len(videos) == 0:
                raise ValueError(f"{self.name}: {what} must be a non-empty list of (frames, 3, H, W) tensors")
        gt = [check_video(v, f"{self.name}: gt_videos[{i}]") for i, v in enumerate(gt_videos)]
        pred = [check_video(v, f"{self.name}: pred_videos[{i}]") for i, v in enumerate(pred_videos)]
        return float(self.fn(gt, pred))


# ----------------------------------------------------------------------------------------- factories


def _psnr(resize: int | None = None, max_db: float = pixel.PSNR_CAP_DB) -> FrameMetric:
    return FrameMetric("psnr", True, lambda g, p: pixel.psnr_frames(g, p, max_db=max_db), resize)


def _ssim(resize: int | None = None, kernel_size: int = 11) -> FrameMetric:
    return FrameMetric("ssim", True, lambda g, p: pixel.ssim_frames(g, p, kernel_size=kernel_size), resize)


def _lpips(
    resize: int | None = None,
    net: str = "alex",
    weights: str | None = None,
    heads: str | None = None,
    batch_size: int = 16,
    device: str | None = None,
) -> FrameMetric:
    model = LPIPS.from_pretrained(net=net, weights=weights, heads=heads).to(device or "cpu")
    return FrameMetric("lpips", False, model.distance, resize, batch_size, device)


def _controllability(**lpips_options: Any) -> FrameMetric:
    """World-In-World (ch. 1, 8) controllability: ``1 - LPIPS(gt, pred)`` per frame; higher is better.
    Takes LPIPS's options (its signature is `_lpips`'s, so `get_metric` checks them alike)."""
    lpips = _lpips(**lpips_options)
    return FrameMetric(
        "controllability", True, lambda g, p: 1.0 - lpips.fn(g, p), lpips.resize, lpips.batch_size, lpips.device
    )


_controllability.__signature__ = inspect.signature(_lpips)  # type: ignore[attr-defined]


def _dreamsim(
    resize: int | None = None,
    weights: str | None = None,
    hub: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> FrameMetric:
    model = DreamSim.from_pretrained(weights=weights, hub=hub).to(device or "cpu")
    return FrameMetric("dreamsim", False, model.distance, resize, batch_size, device)


def _pretrained_set_metric(name: str, network: type[FVD] | type[FID]) -> Callable[..., SetMetric]:
    """The factory of the set metric ``name`` computed by a pretrained ``network`` (FVD, FID).

    Its options are ``network.from_pretrained``'s (the defaults stated there: the network's input size,
    feature and batch size) plus ``device``, so `get_metric` checks them from its signature."""

    def factory(*, device: str | None = None, **options: Any) -> SetMetric:
        model = network.from_pretrained(**options).to(device or "cpu")
        return SetMetric(name, False, model.compute)

    keyword = inspect.Parameter.KEYWORD_ONLY
    options = [p.replace(kind=keyword) for p in inspect.signature(network.from_pretrained).parameters.values()]
    device = inspect.Parameter("device", keyword, default=None, annotation=str | None)
    factory.__signature__ = inspect.Signature([*options, device], return_annotation=SetMetric)  # type: ignore[attr-defined]
    factory.__name__ = f"_{name}"
    return factory


_fvd = _pretrained_set_metric("fvd", FVD)
_fid = _pretrained_set_metric("fid", FID)


_FACTORIES: dict[str, Callable[..., FrameMetric | SetMetric]] = {
    "psnr": _psnr,
    "ssim": _ssim,
    "lpips": _lpips,
    "dreamsim": _dreamsim,
    "fvd": _fvd,
    "fid": _fid,
    "controllability": _controllability,
    "traj": build_traj,
    "depth": build_depth,
}


def available_metrics() -> list[str]:
    """Names accepted by :func:`get_metric`."""
    return list(_FACTORIES)


def get_metric(name: str, **options: Any) -> FrameMetric | SetMetric:
    """Build the metric ``name`` with ``options`` (see the module docstring for each metric's options).

    Raises:
        ValueError: unknown metric name or option.
        FileNotFoundError: the metric needs weight files that were not found (the message names them).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(available_metrics())}")
    factory = _FACTORIES[key]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"metric {key!r}: unknown option(s) {unknown}; accepted: {accepted}")
    return factory(**options)
