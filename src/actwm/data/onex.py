"""1X world-model challenge raw data v2.0 shards.

Per shard `s` (files anywhere below the root, matched by name)::

    video_{s}.mp4            the shard's frames (512x512 in the release); fps read from the container
    segment_idx_{s}.bin      int32 (N,): a change of value starts a new episode
    states_{s}.bin           float32 (N, 25): see `actwm.actions.HUMANOID25_NAMES`
    metadata_{s}.json        {"shard_num_frames": N, ...}

Episodes are the maximal runs of equal segment index within a shard (a segment id that continues into
the next shard starts a new episode there, since the shard videos are separate files). Action convention (action space
`humanoid25`):
row t of an episode is the next state, `state[t + 1]` (the joint/velocity targets that take frame t to
t+1); the last row is zeros, as everywhere in actwm. The state itself is stored as `observation.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from actwm.data.safety import inside_root
from actwm.episode import Episode
from actwm.io import read_json
from actwm.video import iter_video, read_video, video_info

STATE_DIM = 25


@dataclass(frozen=True)
class _Segment:
    shard: str
    segment_id: int
    start: int
    stop: int


def _find(root: Path, name: str) -> Path:
    """The first file called `name` below `root`; it must not lead outside `root` (symlinks)."""
    hits = sorted(root.rglob(name))
    if not hits:
        raise FileNotFoundError(f"{root}: {name} not found (1X raw v2.0 shard files)")
    return inside_root(root, hits[0].relative_to(root), str(hits[0]))


def _read_bin(path: Path, dtype: type, n: int, width: int | None) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize * (width or 1)
    size = path.stat().st_size
    if size != n * itemsize:
        what = f"{n} x {width}" if width else f"{n}"
        raise ValueError(
            f"{path}: holds {size} bytes, expected {n * itemsize} ({what} {np.dtype(dtype).name}) for "
            f"shard_num_frames={n} (mismatched state/frame counts)"
        )
    arr = np.fromfile(path, dtype=dtype)
    return arr.reshape(n, width) if width else arr


class OneXDataset:
    """1X raw v2.0 shards under `root` as `humanoid25` `Episode`s, one per segment."""

    action_space = "humanoid25"

    def __init__(self, root: str | Path, *, min_length: int = 2) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: 1X data folder not found")
        metas = sorted(self.root.rglob("metadata_*.json"), key=lambda p: _shard_key(p.stem[len("metadata_") :]))
        for m in metas:
            inside_root(self.root, m.relative_to(self.root), str(m))
        if not metas:
            raise ValueError(f"{self.root}: no metadata_<shard>.json files (1X raw v2.0 layout)")
        self.shards: dict[str, dict[str, object]] = {}
        self.segments: list[_Segment] = []
        for meta_path in metas:
            shard = meta_path.stem[len("metadata_") :]
            meta = read_json(meta_path)
            if "shard_num_frames" not in meta:
                raise ValueError(f"{meta_path}: field 'shard_num_frames' missing")
            n = int(meta["shard_num_frames"])
            seg_path = _find(self.root, f"segment_idx_{shard}.bin")
            seg = _read_bin(seg_path, np.int32, n, None)
            self.shards[shard] = {
                "n": n,
                "video": _find(self.root, f"video_{shard}.mp4"),
                "states": _find(self.root, f"states_{shard}.bin"),
                "segment_idx": seg_path,
                "meta": meta,
            }
            _read_bin(self.shards[shard]["states"], np.float32, n, STATE_DIM)  # validate size early
            cuts = np.flatnonzero(np.diff(seg) != 0) + 1
            bounds = np.concatenate([[0], cuts, [n]])
            for a, b in zip(bounds[:-1], bounds[1:]):
                if b - a >= min_length:
                    self.segments.append(_Segment(shard, int(seg[a]), int(a), int(b)))
        if not self.segments:
            raise ValueError(f"{self.root}: no segments of at least {min_length} frames")
        self.fps = self._container_fps(self.shards[next(iter(self.shards))]["video"])  # type: ignore[arg-type]

    @staticmethod
    def _container_fps(path: Path) -> float:
        return video_info(path).fps

    def __len__(self) -> int:
        return len(self.segments)

    def _states(self, shard: str) -> np.ndarray:
        info = self.shards[shard]
        return _read_bin(info["states"], np.float32, int(info["n"]), STATE_DIM)  # type: ignore[arg-type]

    def _make(self, seg: _Segment, frames: np.ndarray, states: np.ndarray) -> Episode:
        st = states[seg.start : seg.stop].astype(np.float32)
        actions = np.zeros_like(st)
        actions[:-1] = st[1:]
        meta = {
            "source": str(self.shards[seg.shard]["video"]),
            "shard": seg.shard,
            "segment_id": seg.segment_id,
            "shard_frames": [seg.start, seg.stop],
            "scene_id": f"{seg.shard}:{seg.segment_id}",
            "dataset": "1x",
        }
        return Episode(frames=frames, actions=actions, state=st, fps=self.fps, action_space="humanoid25", meta=meta)

    def _decode_shard(self, shard: str) -> Iterator[np.ndarray]:
        """Yield the shard's frames one by one; raise if the video is shorter/longer than its metadata."""
        info = self.shards[shard]
        path, n = info["video"], int(info["n"])  # type: ignore[arg-type]
        count = 0
        for frame in iter_video(path):
            if count >= n:
                raise ValueError(f"{path}: video has more frames than shard_num_frames={n}")
            count += 1
            yield frame
        if count < n:
            raise ValueError(f"{path}: video has {count} frames but metadata says shard_num_frames={n}")

    def iter_episodes(self, start: int = 0) -> Iterator[Episode]:
        """Yield episodes `start, start+1, ...`, decoding each needed shard once."""
        todo = self.segments[start:]
        by_shard: dict[str, list[_Segment]] = {}
        for seg in todo:
            by_shard.setdefault(seg.shard, []).append(seg)
        for shard, segs in by_shard.items():
            states = self._states(shard)
            buf: list[np.ndarray] = []
            k = 0
            for idx, frame in enumerate(self._decode_shard(shard)):
                buf.append(frame)
                while k < len(segs) and idx + 1 == segs[k].stop:
                    s = segs[k]
                    yield self._make(s, np.stack(buf[s.start - (idx + 1 - len(buf)) :]), states)
                    k += 1
                # keep only frames a later segment of this shard may need
                if k < len(segs):
                    first_needed = segs[k].start
                    drop = first_needed - (idx + 1 - len(buf))
                    if drop > 0:
                        del buf[:drop]
                else:
                    buf.clear()

    def episode(self, i: int) -> Episode:
        seg = self.segments[i]
        info = self.shards[seg.shard]
        frames, _ = read_video(info["video"], seg.start, seg.stop)  # type: ignore[arg-type]
        return self._make(seg, frames, self._states(seg.shard))

    def __iter__(self) -> Iterator[Episode]:
        return self.iter_episodes(0)


def _shard_key(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (1 << 30, s)
