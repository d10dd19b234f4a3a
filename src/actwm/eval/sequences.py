"""Reading ground-truth and predicted sequences from folders and matching them by name.

Layout of `--gt DIR` and `--pred DIR`: one sequence per entry, either

* a subfolder of PNG/JPG frames (sorted by file name), sequence name = folder name, or
* a video file (`.mp4`, `.mkv`, `.avi`, `.mov`, `.webm`), sequence name = file stem.

Prediction `P/<name>` is matched to ground truth `G/<name>` (the two may use different storage, e.g.
PNG folders vs mp4). A predicted sequence holds either the same number of frames as its ground truth
(context frames included, as `actwm rollout` writes them) or only the predicted frames
(`len(gt) - context`); in the latter case the ground-truth context frames are put in front.

Optional simulator side files next to a ground-truth sequence (arrays with first axis = frames):

==============================  ===========================================  =====================
 folder sequence `G/<seq>/`      video sequence `G/<seq>.mp4`                 content
==============================  ===========================================  =====================
 `segmentation.npy`              `<seq>.seg.npy`                              `(T, H, W)` int ids
 `depth.npy`                     `<seq>.depth.npy`                            `(T, H, W)` metres
 `intrinsics.npy`                `<seq>.intrinsics.npy`                       `(T, 3, 3)`
 `extrinsics.npy`                `<seq>.extrinsics.npy`                       `(T, 4, 4)` world->cam
 `meta.json`                     `<seq>.meta.json`                            `{"static_ids": [...]}`
==============================  ===========================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actwm.io import read_json
from actwm.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_frames

__all__ = [
    "SequencePair",
    "list_sequences",
    "match_sequences",
    "make_pair",
    "load_pair",
    "load_extras",
    "EXTRA_KEYS",
]

EXTRA_KEYS = ("segmentation", "depth", "intrinsics", "extrinsics")
_FILE_SIDE = {
    "segmentation": ".seg.npy",
    "depth": ".depth.npy",
    "intrinsics": ".intrinsics.npy",
    "extrinsics": ".extrinsics.npy",
}


def list_sequences(root: str | Path) -> dict[str, Path]:
    """Map sequence name -> path for every frame folder or video file directly inside `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    seqs: dict[str, Path] = {}
    loose_images = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            name = p.name
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            name = p.stem
        else:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                loose_images.append(p.name)
            continue
        if name in seqs:
            raise ValueError(f"{root}: sequence {name!r} appears twice ({seqs[name].name} and {p.name})")
        seqs[name] = p
    if not seqs:
        hint = (
            " (it holds image files directly: put each sequence's frames in its own subfolder)" if loose_images else ""
        )
        raise ValueError(f"{root}: no sequences found (expected subfolders of PNG/JPG frames or video files){hint}")
    return seqs


def match_sequences(gt_root: str | Path, pred_root: str | Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair every ground-truth sequence with its prediction.

    Returns `([(name, gt_path, pred_path), ...] sorted by name, [prediction names without ground truth])`.
    Raises ValueError naming the sequence(s) whose prediction is missing.
    """
    gt = list_sequences(gt_root)
    pred = list_sequences(pred_root)
    missing = [n for n in gt if n not in pred]
    if missing:
        raise ValueError(f"{pred_root}: no prediction for ground-truth sequence(s) {missing}")
    extra = sorted(n for n in pred if n not in gt)
    return [(n, gt[n], pred[n]) for n in sorted(gt)], extra


def _side_path(gt_path: Path, key: str) -> Path:
    if gt_path.is_dir():
        return gt_path / (f"{key}.npy" if key in EXTRA_KEYS else "meta.json")
    return gt_path.with_name(gt_path.stem + (_FILE_SIDE[key] if key in EXTRA_KEYS else ".meta.json"))


def load_extras(name: str, gt_path: Path, num_frames: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load whichever simulator side files exist for a ground-truth sequence (see module docstring).

    Returns `(arrays, meta)`; raises ValueError naming the sequence when an array's length differs from
    the sequence's frame count or a file cannot be read.
    """
    arrays: dict[str, np.ndarray] = {}
    for key in EXTRA_KEYS:
        path = _side_path(gt_path, key)
        if not path.is_file():
            continue
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"sequence {name!r}: cannot read {path} ({exc})") from exc
        if len(arr) != num_frames:
            raise ValueError(f"sequence {name!r}: {path.name} has {len(arr)} frames but the video has {num_frames}")
        arrays[key] = arr
    meta_path = _side_path(gt_path, "meta")
    meta = read_json(meta_path) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"sequence {name!r}: {meta_path} must hold a JSON object")
    return arrays, meta


def side_file_hint(gt_path: Path, key: str) -> Path:
    """Where the side file `key` of a ground-truth sequence is expected."""
    return _side_path(gt_path, key)


@dataclass
class SequencePair:
    """A matched pair. `gt`, `pred`: `(T, H, W, 3)` uint8, same shape; `extras`/`meta`: side data.

    `gt_path` is the ground-truth folder or video the pair was read from (None for in-memory data).
    """

    name: str
    gt: np.ndarray
    pred: np.ndarray
    gt_path: Path | None
    pred_included_context: bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def side_hint(self, key: str) -> str:
        """Where the side data `key` is expected (a file next to the ground truth, or an `evaluate` argument)."""
        if self.gt_path is None:
            return f"evaluate(..., {key}=...)"
        return str(_side_path(self.gt_path, key))


def _check_frames(name: str, what: str, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"sequence {name!r}: {what} must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def make_pair(
    name: str,
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    context: int = 1,
    extras: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
    gt_path: Path | None = None,
) -> SequencePair:
    """Check one pair and put the context in front of a prediction that lacks it.

    Args:
        gt: `(T, H, W, 3)` uint8 ground truth; pred: the same shape, or `(T - context, H, W, 3)` (predicted
            frames only). extras: side arrays keyed by `EXTRA_KEYS`, first axis = T. meta: e.g. `static_ids`.
    Raises ValueError naming the sequence on any mismatch.
    """
    gt, pred = _check_frames(name, "ground truth", gt), _check_frames(name, "prediction", pred)
    if gt.shape[1:] != pred.shape[1:]:
        raise ValueError(
            f"sequence {name!r}: frame sizes differ: ground truth {gt.shape[2]}x{gt.shape[1]} vs "
            f"prediction {pred.shape[2]}x{pred.shape[1]} (width x height)"
        )
    if len(gt) <= context:
        raise ValueError(
            f"sequence {name!r}: ground truth has {len(gt)} frames, not more than the {context} context frame(s)"
        )
    included = True
    if len(pred) == len(gt) - context:
        pred = np.concatenate([gt[:context], pred])
        included = False
    elif len(pred) != len(gt):
        raise ValueError(
            f"sequence {name!r}: lengths differ: ground truth has {len(gt)} frames, prediction {len(pred)} "
            f"(expected {len(gt)} with the context frames or {len(gt) - context} without)"
        )
    extras = {k: np.asarray(v) for k, v in (extras or {}).items() if v is not None}
    unknown = sorted(set(extras) - set(EXTRA_KEYS))
    if unknown:
        raise ValueError(f"sequence {name!r}: unknown side data {unknown}; known: {list(EXTRA_KEYS)}")
    for key, arr in extras.items():
        if len(arr) != len(gt):
            raise ValueError(f"sequence {name!r}: {key} has {len(arr)} frames but the video has {len(gt)}")
    for key in ("segmentation", "depth"):
        if key in extras and extras[key].shape[1:] != gt.shape[1:3]:
            raise ValueError(f"sequence {name!r}: {key} is {extras[key].shape[1:]} but frames are {gt.shape[1:3]}")
    return SequencePair(name, gt, pred, gt_path, included, extras, dict(meta or {}))


def load_pair(name: str, gt_path: Path, pred_path: Path, *, context: int = 1) -> SequencePair:
    """Read and check one pair from disk (frames and side files); raises ValueError naming the sequence."""
    try:
        gt = read_frames(gt_path)
        pred = read_frames(pred_path)
    except ValueError as exc:
        raise ValueError(f"sequence {name!r}: {exc}") from exc
    extras, meta = load_extras(name, gt_path, len(gt))
    return make_pair(name, gt, pred, context=context, extras=extras, meta=meta, gt_path=gt_path)
