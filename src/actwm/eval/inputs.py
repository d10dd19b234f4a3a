"""In-memory inputs of `actwm.eval.engine.evaluate`: videos and side data -> checked `SequencePair`s.

Videos may be given as

* one video: uint8 `(T, H, W, 3)` (numpy or torch), or float `(T, 3, H, W)` in [0, 1] (torch or numpy);
* a batch of videos: the same with a leading sequence axis, `(S, T, ...)`;
* a list of videos, or a dict `{name: video}`.

Float frames are quantised to uint8 as a written PNG would be (`actwm.pixels.unit_to_uint8`), so scoring
frames in memory and scoring the same frames written to disk give the same numbers.

Side data (`segmentation` `(T, H, W)` ids, `depth` `(T, H, W)` metres, `intrinsics` `(T, 3, 3)`,
`extrinsics` `(T, 4, 4)` world->camera) follows the layout of the videos: a batch array, a list or a dict by
name. `static_ids` is one list of ids shared by every sequence, a list of such lists, or a dict by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from actwm.eval.sequences import EXTRA_KEYS, SequencePair, make_pair
from actwm.pixels import unit_to_uint8

__all__ = ["in_memory_pairs", "as_uint8_video"]


def as_uint8_video(video: Any, where: str) -> np.ndarray:
    """One video -> `(T, H, W, 3)` uint8 numpy (see the module docstring for the accepted forms)."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(np.ascontiguousarray(video))
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{where}: expected an array or tensor video, got {type(video).__name__}")
    if video.dtype == torch.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"{where}: uint8 video must be (T, H, W, 3), got {tuple(video.shape)}")
        return video.cpu().numpy()
    if not video.is_floating_point() or video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(
            f"{where}: expected uint8 (T, H, W, 3) or float (T, 3, H, W) in [0, 1], got {video.dtype} "
            f"{tuple(video.shape)}"
        )
    if not torch.isfinite(video).all():
        raise ValueError(f"{where}: video holds NaN or infinite values")
    return unit_to_uint8(video)


def _is_batch(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 5


def _named_videos(videos: Any, what: str, names: list[str] | None) -> dict[str, Any]:
    """Videos in any accepted layout -> `{name: video}` in the given order."""
    if isinstance(videos, dict):
        return {str(k): v for k, v in videos.items()}
    if _is_batch(videos) or isinstance(videos, (list, tuple)):
        items = list(videos)
    elif isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 4:
        items = [videos]
    else:
        raise ValueError(f"{what}: expected a video, a batch (S, T, ...), a list or a dict of videos")
    if names is None:
        names = [f"seq{i:03d}" for i in range(len(items))]
    if len(names) != len(items) or len(set(names)) != len(names):
        raise ValueError(f"names: need {len(items)} distinct names for the {what} videos, got {names}")
    return dict(zip(names, items))


def _per_sequence(value: Any, key: str, names: list[str]) -> dict[str, Any]:
    """Side data in the videos' layout -> `{name: array or None}`."""
    if value is None:
        return dict.fromkeys(names)
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(names))
        if unknown:
            raise ValueError(f"{key}: given for unknown sequence(s) {unknown}")
        return {n: value.get(n) for n in names}
    items = list(value) if (isinstance(value, (list, tuple)) or _is_batch_side(value, key)) else [value]
    if len(items) != len(names):
        raise ValueError(f"{key}: {len(items)} entries for {len(names)} sequences")
    return dict(zip(names, items))


def _is_batch_side(value: Any, key: str) -> bool:
    ndim = {"segmentation": 4, "depth": 4, "intrinsics": 4, "extrinsics": 4}[key]
    return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == ndim


def _static_ids(value: Any, names: list[str]) -> dict[str, list[int] | None]:
    if value is None:
        return dict.fromkeys(names)
    if isinstance(value, dict):
        return {n: value.get(n) for n in names}
    value = list(value)
    if value and all(isinstance(v, (list, tuple, np.ndarray)) for v in value):
        if len(value) != len(names):
            raise ValueError(f"static_ids: {len(value)} lists for {len(names)} sequences")
        return {n: [int(i) for i in v] for n, v in zip(names, value)}
    return {n: [int(i) for i in value] for n in names}


def _numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def in_memory_pairs(
    gt: Any,
    pred: Any,
    *,
    context: int = 1,
    names: list[str] | None = None,
    static_ids: Any = None,
    **side: Any,
) -> list[SequencePair]:
    """Checked pairs from in-memory videos and side data (keys of `side`: `EXTRA_KEYS`).

    Raises ValueError naming the sequence or argument on a mismatch.
    """
    unknown = sorted(set(side) - set(EXTRA_KEYS))
    if unknown:
        raise ValueError(f"unknown side data {unknown}; known: {list(EXTRA_KEYS)}")
    gts = _named_videos(gt, "gt", names)
    preds = _named_videos(pred, "pred", list(gts) if names is None and not isinstance(pred, dict) else names)
    missing = [n for n in gts if n not in preds]
    if missing:
        raise ValueError(f"pred: no prediction for ground-truth sequence(s) {missing}")
    extra = [n for n in preds if n not in gts]
    if extra:
        raise ValueError(f"pred: prediction(s) without ground truth {extra}")
    order = list(gts)
    per_key = {k: _per_sequence(side.get(k), k, order) for k in EXTRA_KEYS}
    statics = _static_ids(static_ids, order)
    pairs = []
    for n in order:
        extras = {k: _numpy(per_key[k][n]) for k in EXTRA_KEYS if per_key[k][n] is not None}
        meta = {"static_ids": statics[n]} if statics[n] is not None else {}
        pairs.append(
            make_pair(
                n,
                as_uint8_video(gts[n], f"gt {n!r}"),
                as_uint8_video(preds[n], f"pred {n!r}"),
                context=context,
                extras=extras,
                meta=meta,
            )
        )
    return pairs
