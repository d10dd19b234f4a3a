"""Depth accuracy (WorldArena's "Depth Accuracy"): AbsRel after median scaling of monocular depth predictions.

The monocular network is Depth-Anything-V2-Small (hub id `depth-anything/Depth-Anything-V2-Small-hf`),
loaded with transformers' own classes (`AutoModelForDepthEstimation` + `AutoImageProcessor`) from a directory
in the official layout (`config.json`, `model.safetensors`, `preprocessor_config.json`), offline only:

1. `weights=DIR` (the official layout);
2. `hub=REPO_ID`: that repo from the local Hugging Face cache (`huggingface-cli download REPO_ID` first);
3. `$ACTWM_WEIGHTS_DIR/Depth-Anything-V2-Small-hf` (default `~/.cache/actwm/weights/...`), then the default
   hub id in the local Hugging Face cache.

Nothing found -> FileNotFoundError naming the files, the hub id and the directories searched. A checkpoint
that leaves any parameter randomly initialised (missing or mismatched keys) is refused: the metric never runs
a random network. The model file's sha256 is recorded with every result.

The maths (`abs_rel_median`), per frame: valid pixels have a finite ground-truth depth > `min_depth` and a
finite positive prediction; the prediction is scaled by `median(gt) / median(pred)` over the valid pixels;
`AbsRel = mean(|s * pred - gt| / gt)`. Lower is better.

Against the simulator's metric depth (`reference="sim"`, the default): a "relative" Depth-Anything model
predicts affine-invariant *inverse* depth, so its output is inverted (`depth = 1 / disparity`) before the
median scaling (the unknown shift of the inverse depth is not modelled: median scaling fixes the scale only);
a "metric" model's output is used as is. `reference="network"` is WorldArena's protocol: the same network
on the ground-truth frames is the reference, and the two raw outputs are compared (with median scaling).
WorldArena scales once per video; we scale per frame (the standard monocular protocol), which lets the
engine report the value at frame h; `info["worldarena_score"]` maps AbsRel to WorldArena's [0, 1] score
`1 - clip((AbsRel - 0.2228) / (4.3711 - 0.2228), 0, 1)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from actwm.eval.sequences import SequencePair
from actwm.eval.weights import WEIGHTS_ENV, weights_dir
from actwm.io import file_sha256

__all__ = [
    "DEFAULT_HUB_ID",
    "LOCAL_DIR_NAME",
    "REQUIRED_FILES",
    "abs_rel_median",
    "worldarena_depth_score",
    "resolve_depth_model",
    "DepthNetwork",
    "DepthMetric",
    "build_depth",
]

DEFAULT_HUB_ID = "depth-anything/Depth-Anything-V2-Small-hf"
LOCAL_DIR_NAME = "Depth-Anything-V2-Small-hf"
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
HUB_CACHE: str | None = None  # Hugging Face cache directory (None: huggingface_hub's default)
WORLDARENA_ABSREL_BOUNDS = (0.2228, 4.3711)  # WorldArena's empirical min / max of AbsRel


def abs_rel_median(gt: np.ndarray, pred: np.ndarray, min_depth: float = 1e-3) -> float:
    """AbsRel of one frame after median scaling (module docstring). `gt`, `pred`: `(H, W)`; NaN if no valid pixel."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"depth: ground truth {gt.shape} and prediction {pred.shape} must be the same (H, W)")
    valid = np.isfinite(gt) & (gt > min_depth) & np.isfinite(pred) & (pred > 0)
    if not valid.any():
        return float("nan")
    g, p = gt[valid], pred[valid]
    scaled = p * (np.median(g) / np.median(p))
    return float(np.mean(np.abs(scaled - g) / g))


def worldarena_depth_score(abs_rel: float) -> float:
    """WorldArena's [0, 1] depth score of an AbsRel (higher is better)."""
    lo, hi = WORLDARENA_ABSREL_BOUNDS
    return 1.0 - min(1.0, max(0.0, (abs_rel - lo) / (hi - lo)))


def _has_layout(path: Path) -> list[str]:
    """Names of the official files missing from `path`."""
    return [name for name in REQUIRED_FILES if not (path / name).is_file()]


def _from_hub_cache(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download  # ships with transformers; imported where used

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=HUB_CACHE))
    except Exception:  # not in the cache (offline lookup): reported by the caller
        return None
    return path if not _has_layout(path) else None


def resolve_depth_model(weights: str | os.PathLike | None = None, hub: str | None = None) -> Path:
    """The directory holding the depth network in the official layout (search order: module docstring)."""
    files = ", ".join(REQUIRED_FILES)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"depth: weights={str(path)!r} is not a directory (expected one with {files})")
        missing = _has_layout(path)
        if missing:
            raise FileNotFoundError(f"depth: {path} lacks {', '.join(missing)} (the official layout has {files})")
        return path
    if hub is not None:
        found = _from_hub_cache(hub)
        if found is None:
            raise FileNotFoundError(
                f"depth: hub={hub!r} is not in the local Hugging Face cache (offline); run "
                f"`huggingface-cli download {hub}` on a machine with network, or pass weights=DIR with {files}"
            )
        return found
    local = weights_dir() / LOCAL_DIR_NAME
    if not _has_layout(local):
        return local
    found = _from_hub_cache(DEFAULT_HUB_ID)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"depth: Depth-Anything-V2-Small weights not found. Provide {files} (from the Hugging Face repo "
        f"{DEFAULT_HUB_ID}): pass weights=DIR (--metric-option depth.weights=DIR), hub=REPO_ID of a cached "
        f"download, or put them in ${WEIGHTS_ENV}/{LOCAL_DIR_NAME} (currently {local}). Searched: {local}; "
        f"the Hugging Face cache for {DEFAULT_HUB_ID}"
    )


class DepthNetwork:
    """A transformers depth-estimation model and its image processor, loaded offline from `path`."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 8) -> None:
        # transformers is heavy to import; loaded only when a depth metric is built
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.path = Path(path)
        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        model, info = AutoModelForDepthEstimation.from_pretrained(
            self.path, local_files_only=True, output_loading_info=True
        )
        untrained = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
        if untrained:
            raise ValueError(
                f"depth: {self.path / 'model.safetensors'} does not hold every parameter of the network "
                f"({len(untrained)} would be randomly initialised, e.g. {untrained[:3]}); refusing to run"
            )
        self.model = model.to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.kind = getattr(model.config, "depth_estimation_type", "relative") or "relative"
        self.sha256 = file_sha256(self.path / "model.safetensors")
        self.name = f"{model.config.model_type}:{self.path.name}"

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8 -> `(T, H, W)` float64 raw network output at the frames' size."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"depth: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        size = tuple(frames.shape[1:3])
        out = []
        for i in range(0, len(frames), self.batch_size):
            chunk = list(frames[i : i + self.batch_size])
            inputs = self.processor(images=chunk, return_tensors="pt").to(self.device)
            outputs = self.model(**inputs)
            post = self.processor.post_process_depth_estimation(outputs, target_sizes=[size] * len(chunk))
            out.extend(p["predicted_depth"].float().cpu().numpy() for p in post)
        return np.stack(out).astype(np.float64)

    def depth(self, frames: np.ndarray) -> np.ndarray:
        """Metric-up-to-scale depth: the output inverted for a "relative" (inverse-depth) model."""
        raw = self(frames)
        if self.kind == "metric":
            return raw
        with np.errstate(divide="ignore"):
            return np.where(raw > 0, 1.0 / raw, np.nan)


@dataclass
class DepthMetric:
    """`metric.score_pair(pair, context, horizons) -> (mean AbsRel per horizon, AbsRel at frame h, info)`."""

    network: DepthNetwork = field(repr=False)
    reference: str = "sim"
    min_depth: float = 1e-3
    name: str = field(default="depth", init=False)
    higher_is_better: bool = field(default=False, init=False)
    kind: str = field(default="sequence", init=False)

    def __post_init__(self) -> None:
        if self.reference not in ("sim", "network"):
            raise ValueError(f"depth: reference must be 'sim' or 'network', got {self.reference!r}")
        if not self.min_depth >= 0:
            raise ValueError(f"depth: min_depth must be >= 0, got {self.min_depth}")

    def per_frame(self, pair: SequencePair, frames: slice) -> np.ndarray:
        """AbsRel of each frame in `frames` (predicted frames only)."""
        if self.reference == "sim":
            if "depth" not in pair.extras:
                raise ValueError(f"depth needs the ground-truth depth: {pair.side_hint('depth')}")
            gt, pred = pair.extras["depth"][frames], self.network.depth(pair.pred[frames])
        else:
            gt, pred = self.network(pair.gt[frames]), self.network(pair.pred[frames])
        return np.array([abs_rel_median(g, p, self.min_depth) for g, p in zip(gt, pred)])

    def score_pair(self, pair: SequencePair, context: int, horizons: list[int]) -> tuple[dict, dict, dict]:
        try:
            values = self.per_frame(pair, slice(context, context + max(horizons)))
        except ValueError as exc:
            raise ValueError(f"sequence {pair.name!r}: {exc}") from exc
        mean, at = {}, {}
        for h in horizons:
            part = values[:h]
            mean[str(h)] = float(np.nanmean(part)) if np.isfinite(part).any() else None
            at[str(h)] = float(part[-1]) if np.isfinite(part[-1]) else None
        info = {
            "network": self.network.name,
            "weights": str(self.network.path),
            "sha256": self.network.sha256,
            "output": self.network.kind,
            "reference": self.reference,
            "scaling": "median, per frame",
            "worldarena_score": {h: None if v is None else worldarena_depth_score(v) for h, v in mean.items()},
        }
        return mean, at, info


def build_depth(
    resize: int | None = None,
    weights: str | None = None,
    hub: str | None = None,
    reference: str = "sim",
    min_depth: float = 1e-3,
    batch_size: int = 8,
    device: str | None = None,
) -> DepthMetric:
    """Factory for the metric registry. `resize` is accepted and ignored: the image processor sizes the
    network input, and the output is resized back to the frames' size."""
    path = resolve_depth_model(weights, hub)
    return DepthMetric(DepthNetwork(path, device or "cpu", batch_size), reference, float(min_depth))
