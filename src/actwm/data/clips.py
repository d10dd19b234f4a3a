"""Clip sampler: fixed-length clips of frames + actions from a LeRobot store, for training and evaluation.

A clip has `n = context + horizon` frames taken every `step` stored frames (`step = stride`, or
`fps / target_fps` when `target_fps` is given; it must be a whole number). Actions per clip frame follow
`action_mode` (`delta` or `cumulative`), computed from the stored rows by `actwm.actions` (see its module
docstring for the conventions), then normalised by `ClipDataset.normaliser` (an `actwm.actions.ActionNormaliser`):
`std` = (a - mean) / std, with mean/std from `meta/stats.json` (all episodes) for delta actions at the stored
rate, otherwise computed from the training episodes' stored actions under the same transform; `nwm` (nav3
only) = NWM exactly (`cumulative`: `normalize_data` of the cumulative xy in metric-spacing units; `delta`:
NWM's `get_delta_np` over those, i.e. deltas in the clip's first-frame coordinates, row 0 keeping
`normalize_data(0)`, yaw differenced from the wrapped cumulative yaw, 2 pi jumps included; the clip's frame 0
plays NWM's current frame); `nwm_scale` (nav3) = our per-step deltas (or cumulative poses) at NWM's scale
(xy / spacing * 2 / (max - min), no offset); `none` = metres/radians as stored.

Items also carry, when the store has them, camera `intrinsics` `(n, 3, 3)` (adjusted to the item's resized
frames), `extrinsics` `(n, 4, 4)` and the arm's `joints` `(n, J)` (the state columns named `q<i>`, then the
fingers), at the video's frame indices, read from the parquet columns (no extra decoding); keys match
`actwm.batch.Batch`.

Splits are by episode or scene, never by frame: `split_by="stored"` uses the stored `split` column
(falling back to a deterministic hash of the episode when no episode has one), `"episode"` hashes the
episode, `"scene"` hashes `scene_id`. Decoded episodes are cached per process in a bounded LRU, so the
dataset works with DataLoader workers (each worker keeps its own cache).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from actwm.actions import ACTION_MODES, NORMALISATIONS, ActionNormaliser, gather_windows, transform_actions
from actwm.checks import require_at_least, require_choice, require_positive, require_range
from actwm.data.lerobot import LeRobotDataset

SPLIT_BY = ("stored", "episode", "scene")


@dataclass(frozen=True)
class ClipConfig:
    """Validated settings of a `ClipDataset` (see the module docstring)."""

    split: str | None = "train"
    context: int = 1
    horizon: int = 8
    stride: int = 1
    target_fps: float | None = None
    action_mode: str = "delta"
    normalise: str = "std"
    size: int | None = None
    split_by: str = "stored"
    test_fraction: float = 0.1
    seed: int = 0
    start_every: int = 1
    cache_mb: float = 1024.0

    def __post_init__(self) -> None:
        require_at_least(self, 1, "context", "stride", "start_every")
        require_at_least(self, 0, "horizon")
        require_positive(self, "target_fps", optional=True)
        require_choice(self, "action_mode", ACTION_MODES)
        require_choice(self, "normalise", NORMALISATIONS)
        require_choice(self, "split_by", SPLIT_BY)
        require_range(self, "test_fraction", 0.0, 1.0)
        require_at_least(self, 2, "size", optional=True)

    @property
    def num_frames(self) -> int:
        return self.context + self.horizon


def hash_split(key: str, test_fraction: float, seed: int) -> str:
    """Deterministic 'train'/'test' label of `key`."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:13], 16) / float(16**13)
    return "test" if h < test_fraction else "train"


# ---------------------------------------------------------------------------------------------- dataset


class ClipDataset(Dataset):
    """Clips from a LeRobot store (v3.0 or v2.1) as a torch Dataset.

    Item: `video` `(n, 3, H, W)` float32 in [0, 1]; `actions` `(n, D)` float32; `state` `(n, S)` float32;
    where the store has them `intrinsics` `(n, 3, 3)` (for the item's resized frames), `extrinsics`
    `(n, 4, 4)` world-to-camera and `joints` `(n, J)` float32 (keys of `actwm.batch.Batch`); `episode_index`,
    `start` (stored frame index of clip frame 0) ints; with `n = context + horizon`.

    Attributes: `normaliser` (`actwm.actions.ActionNormaliser`: what the model must store to read these
    actions), `joint_columns` (state indices of `joints`).
    """

    def __init__(self, root: str | Path | LeRobotDataset, **kwargs: Any) -> None:
        self.config = ClipConfig(**kwargs)
        cfg = self.config
        self.store = root if isinstance(root, LeRobotDataset) else LeRobotDataset(root)
        self.root = self.store.root
        self.fps = self.store.fps
        self.action_space = self.store.action_space
        self.step = self._resolve_step()
        self.clip_fps = self.fps / self.step
        self.labels = self._episode_labels()
        if cfg.split is not None and cfg.split not in set(self.labels):
            raise ValueError(f"{self.root}: no episodes in split {cfg.split!r} (splits: {sorted(set(self.labels))})")
        self.episodes = [i for i, lab in enumerate(self.labels) if cfg.split is None or lab == cfg.split]
        span = (cfg.num_frames - 1) * self.step + 1
        self.joint_columns = joint_columns(self.store.features.get("observation.state", {}).get("names"))
        self._actions: dict[int, np.ndarray] = {}
        self._per_frame: dict[int, dict[str, np.ndarray]] = {}  # state, intrinsics, extrinsics, joints
        index: list[tuple[int, int]] = []
        selected = set(self.episodes)
        for i in range(len(self.store)):  # training episodes too: they give the normalisation statistics
            if self.labels[i] == "train" or i in selected:
                self._load_arrays(i)
        for i in self.episodes:
            t = self.store.episode_lengths[i]
            index += [(i, s) for s in range(0, t - span + 1, cfg.start_every)]
        if not index:
            raise ValueError(
                f"{self.root}: no clip of {cfg.num_frames} frames every {self.step} frames ({span} stored frames) fits "
                f"in the {len(self.episodes)} episodes of split {cfg.split!r}"
            )
        self.index = index
        self.metric_spacing = self._metric_spacing() if cfg.normalise in ("nwm", "nwm_scale") else None
        self.normaliser = self._build_normaliser()
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_bytes = 0

    # -- setup --------------------------------------------------------------------------------------

    def _load_arrays(self, i: int) -> None:
        """Actions and the per-frame arrays items carry (parquet columns only: no decoding)."""
        arr = self.store.episode_arrays(i)
        self._actions[i] = arr["action"]
        per = {"state": np.ascontiguousarray(arr["state"], dtype=np.float32)}
        if "intrinsics" in arr:
            k = np.asarray(arr["intrinsics"], np.float32)
            if self.config.size is not None:
                h, w = self.store.features[self.store.video_key]["shape"][:2]
                k = resize_intrinsics(k, (h, w), self.config.size)
            per["intrinsics"] = k
        if "extrinsics" in arr:
            per["extrinsics"] = np.asarray(arr["extrinsics"], np.float32)
        if self.joint_columns:
            per["joints"] = per["state"][:, self.joint_columns]
        self._per_frame[i] = per

    def _resolve_step(self) -> int:
        cfg = self.config
        if cfg.target_fps is None:
            return cfg.stride
        ratio = self.fps / cfg.target_fps
        step = int(round(ratio))
        if step < 1 or abs(ratio - step) > 1e-6:
            raise ValueError(
                f"{self.root}: target_fps {cfg.target_fps} does not divide the stored {self.fps} fps into whole frames"
            )
        if cfg.stride not in (1, step):
            raise ValueError(
                f"ClipDataset: stride {cfg.stride} conflicts with target_fps {cfg.target_fps} (step {step})"
            )
        return step

    def _episode_labels(self) -> list[str]:
        cfg = self.config
        n = len(self.store)
        if cfg.split_by == "stored":
            stored = self.store.splits()
            if all(s is not None for s in stored):
                return [str(s) for s in stored]
            if any(s is not None for s in stored):
                missing = [i for i, s in enumerate(stored) if s is None][:5]
                raise ValueError(f"{self.root}: some episodes have a stored split and some do not (e.g. {missing})")
            return [hash_split(f"episode:{i}", cfg.test_fraction, cfg.seed) for i in range(n)]
        if cfg.split_by == "episode":
            return [hash_split(f"episode:{i}", cfg.test_fraction, cfg.seed) for i in range(n)]
        labels = []
        for i in range(n):
            scene = self.store.episode_meta(i).get("scene_id")
            if scene is None:
                raise ValueError(f"{self.root}: episode {i} has no scene_id; use split_by='episode' or 'stored'")
            labels.append(hash_split(f"scene:{scene}", cfg.test_fraction, cfg.seed))
        return labels

    def _metric_spacing(self) -> float:
        if self.action_space != "nav3":
            raise ValueError(
                f"{self.root}: normalise={self.config.normalise!r} needs nav3 actions, not {self.action_space!r}"
            )
        spacing = self.store.info.get("actwm", {}).get("metric_spacing")
        if spacing is None and len(self.store):
            spacing = self.store.episode_meta(0).get("metric_spacing")
        if spacing is None:  # no published spacing: the mean stored step length of the training episodes
            steps = np.concatenate([np.linalg.norm(a[:-1, :2], axis=1) for a in self._train_actions()])
            spacing = float(steps[steps > 1e-9].mean()) if (steps > 1e-9).any() else 1.0
        return float(spacing)

    def _train_actions(self) -> list[np.ndarray]:
        train = [i for i in self._actions if self.labels[i] == "train"] or list(self._actions)
        return [self._actions[i] for i in train]

    def _build_normaliser(self) -> ActionNormaliser:
        """The `ActionNormaliser` of this dataset's `normalise` and `action_mode` (statistics for `std`)."""
        cfg = self.config
        d = next(iter(self._actions.values())).shape[1]
        if cfg.normalise != "std":
            return ActionNormaliser.build(cfg.normalise, cfg.action_mode, d, metric_spacing=self.metric_spacing)
        st = self.store.stats.get("action")
        if cfg.action_mode == "delta" and self.step == 1 and st and "mean" in st and "std" in st:
            mean, std = np.asarray(st["mean"], np.float64), np.asarray(st["std"], np.float64)
        else:
            rows = []
            rng = np.random.default_rng(cfg.seed)
            n = cfg.num_frames
            for a in self._train_actions():
                starts = np.arange(0, max(len(a) - (n - 1) * self.step, 1))
                if len(starts) > 256:
                    starts = np.sort(rng.choice(starts, 256, replace=False))
                w, v = gather_windows(a, starts, n, self.step)
                rows.append(transform_actions(w, v, self.action_space, cfg.action_mode).reshape(-1, d))
            allrows = np.concatenate(rows)
            mean, std = allrows.mean(0), allrows.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        return ActionNormaliser.build("std", cfg.action_mode, d, mean=mean, std=std)

    @property
    def action_mean(self) -> np.ndarray:
        """`(D,)` the normaliser's per-dimension centre (`loc`; NWM's delta uses another one in row 0)."""
        return np.asarray(self.normaliser.loc)

    @property
    def action_std(self) -> np.ndarray:
        """`(D,)` the normaliser's per-dimension scale."""
        return np.asarray(self.normaliser.scale)

    # -- items --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def clip_actions(self, episode: int, start: int) -> np.ndarray:
        """Normalised `(n, D)` float32 actions of the clip starting at stored frame `start`."""
        cfg = self.config
        w, v = gather_windows(self._actions[episode], np.array([start]), cfg.num_frames, self.step)
        a = transform_actions(w, v, self.action_space, self.normaliser.convention)[0]
        return self.normaliser.normalise(a).astype(np.float32)

    def normalise_actions(self, a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Apply this dataset's normaliser to raw clip actions `(..., n, D)` (in `normaliser.convention`)."""
        return self.normaliser.normalise(a)

    def denormalise_actions(self, a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Inverse of `normalise_actions`."""
        return self.normaliser.denormalise(a)

    def _frames(self, episode: int) -> torch.Tensor:
        """Decoded (and resized) frames `(T, 3, H, W)` uint8 of an episode, via the LRU cache."""
        if episode in self._cache:
            self._cache.move_to_end(episode)
            return self._cache[episode]
        frames = torch.from_numpy(self.store.frames(episode)).permute(0, 3, 1, 2).contiguous()
        if self.config.size is not None:
            frames = resize_square(frames, self.config.size)
        nbytes = frames.numel()
        limit = self.config.cache_mb * 2**20
        while self._cache and self._cache_bytes + nbytes > limit:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.numel()
        if nbytes <= limit:
            self._cache[episode] = frames
            self._cache_bytes += nbytes
        return frames

    def _clip_frames(self, episode: int, idx: np.ndarray) -> torch.Tensor:
        """`(n, 3, H, W)` uint8 frames at stored indices `idx`: from the cached episode, or, when the whole
        episode would not fit in the cache, by decoding only the clip's span (seeking to a keyframe)."""
        h, w = self.store.features[self.store.video_key]["shape"][:2]
        episode_bytes = self.store.episode_lengths[episode] * h * w * 3
        if episode in self._cache or episode_bytes <= self.config.cache_mb * 2**20:
            return self._frames(episode)[torch.from_numpy(idx)]
        span = self.store.frames(episode, int(idx[0]), int(idx[-1]) + 1)[idx - idx[0]]
        frames = torch.from_numpy(np.ascontiguousarray(span)).permute(0, 3, 1, 2).contiguous()
        return resize_square(frames, self.config.size) if self.config.size is not None else frames

    def __getitem__(self, k: int) -> dict[str, Any]:
        episode, start = self.index[k]
        idx = start + np.arange(self.config.num_frames) * self.step
        item: dict[str, Any] = {
            "video": self._clip_frames(episode, idx).float().div_(255.0),
            "actions": torch.from_numpy(self.clip_actions(episode, start)),
        }
        for key, arr in self._per_frame[episode].items():  # state, then camera and joints where stored
            item[key] = torch.from_numpy(np.ascontiguousarray(arr[idx]))
        item["episode_index"], item["start"] = int(episode), int(start)
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_cache_bytes"] = OrderedDict(), 0
        return state

    def split_episodes(self) -> dict[str, list[int]]:
        """Episode indices per split label (over the whole store)."""
        out: dict[str, list[int]] = {}
        for i, lab in enumerate(self.labels):
            out.setdefault(lab, []).append(i)
        return out


def _resize_plan(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """`resize_square`'s intermediate size `(nh, nw)` and crop offsets `(top, left)`."""
    scale = size / min(h, w)
    nh, nw = max(size, int(math.ceil(h * scale - 1e-6))), max(size, int(math.ceil(w * scale - 1e-6)))
    return nh, nw, (nh - size) // 2, (nw - size) // 2


def resize_intrinsics(intrinsics: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """Intrinsics `(..., 3, 3)` of `(h, w)` frames -> those of the frames `resize_square(.., size)` gives.

    OpenCV pixels (integer values at pixel centres): a resize by `s` maps `u -> (u + 0.5) s - 0.5`
    (`align_corners=False`), the crop subtracts its offset.
    """
    h, w = hw
    nh, nw, top, left = _resize_plan(h, w, size)
    sx, sy = nw / w, nh / h
    a = np.array([[sx, 0.0, 0.5 * sx - 0.5 - left], [0.0, sy, 0.5 * sy - 0.5 - top], [0.0, 0.0, 1.0]])
    return (a @ np.asarray(intrinsics, np.float64)).astype(np.asarray(intrinsics).dtype)


def joint_columns(names: list[str] | None) -> list[int]:
    """Indices of the arm's joint positions in `observation.state` (by name): `q<i>` in order of i, then the
    fingers / gripper (`finger*`, `gripper*`); [] when the state has no such names (e.g. nav)."""
    if not names:
        return []
    arm = sorted((int(n[1:]), i) for i, n in enumerate(names) if n[:1] == "q" and n[1:].isdigit())
    hand = [i for i, n in enumerate(names) if n.startswith(("finger", "gripper"))]
    return [i for _, i in arm] + hand if arm else []


def resize_square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`(T, 3, H, W)` uint8 -> `(T, 3, size, size)` uint8: shorter side to `size`, centre crop."""
    t, c, h, w = frames.shape
    nh, nw, top, left = _resize_plan(h, w, size)
    x = torch.nn.functional.interpolate(
        frames.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
    )
    x = x[:, :, top : top + size, left : left + size]
    return x.round_().clamp_(0, 255).to(torch.uint8)
