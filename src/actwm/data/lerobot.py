"""LeRobotDataset v3.0 writer and reader (v3.0 and v2.1), with pyarrow + PyAV only (no `lerobot`).

Layout written (every path formatted from the templates in `meta/info.json`)::

    meta/info.json                                   codebase_version "v3.0", fps, features, templates
    meta/stats.json                                  mean/std/min/max/count per numeric feature
    meta/tasks.parquet                               task_index, task
    meta/episodes/chunk-000/file-000.parquet         one row per episode (index ranges, video times, extras)
    data/chunk-000/file-000.parquet                  one row per frame (state, action, time, indices, cameras)
    videos/<video_key>/chunk-000/file-000.mp4        H.264, many episodes per file, concatenated in time
    extras/<feature>/chunk-000/file-000.npz          image-shaped extras (depth float32, segmentation int32)

Extras of an `Episode` are stored as additional features: per-frame image-shaped arrays `(T, H, W)`
(depth, segmentation) go to compressed npz files aligned with the data files (described in
`info["actwm"]["extra_features"]` with `storage: "npz"`, template `extras_path`; they stay out of
`features` so that LeRobot's own loader, which builds the parquet schema from `features`, still works); small
per-frame arrays (camera intrinsics `(3, 3)` ->
`observation.camera.intrinsics` (9,), extrinsics `(4, 4)` -> `observation.camera.extrinsics` (16,),
navigation pose -> `observation.pose` (3,)) go to flat fixed-size list columns of the data parquet, with
the original per-frame shape under the feature's `actwm.array_shape`.

Writing is atomic and resumable: episodes are buffered until a data file is full, then its parquet,
mp4, npz and episodes parquet are written (each atomically) and `meta/.actwm_progress.json` records the
committed files. Re-opening the writer on a half-written root continues after the last committed
episode; `finalize()` writes `stats.json`, `tasks.parquet` and, last, `info.json`. A root with
`info.json` is complete.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actwm.actions import get_action_space
from actwm.episode import Episode
from actwm.io import atomic_path, atomic_write_json, read_json

CODEBASE_VERSION = "v3.0"
DEFAULT_VIDEO_KEY = "observation.images.front"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EXTRAS_PATH = "extras/{feature}/chunk-{chunk_index:03d}/file-{file_index:03d}.npz"
PROGRESS_FILE = "meta/.actwm_progress.json"

# Episode.extras key -> feature name (others become `observation.<key>`).
EXTRA_FEATURES = {
    "intrinsics": "observation.camera.intrinsics",
    "extrinsics": "observation.camera.extrinsics",
    "pose": "observation.pose",
    "depth": "observation.depth",
    "segmentation": "observation.segmentation",
}
_META_COLUMNS = ("scene_id", "split", "source")


def extra_feature_name(key: str) -> str:
    return EXTRA_FEATURES.get(key, f"observation.{key}")


# ----------------------------------------------------------------------------------------------- stats


def _moments(x: np.ndarray, axis: tuple[int, ...]) -> dict[str, Any]:
    """Per-dimension count/mean/std/min/max of `x` reduced over `axis` (float64)."""
    x = x.astype(np.float64, copy=False)
    n = int(np.prod([x.shape[a] for a in axis])) if axis else 1
    return {
        "count": n,
        "mean": x.mean(axis=axis),
        "std": x.std(axis=axis),
        "min": x.min(axis=axis),
        "max": x.max(axis=axis),
    }


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-episode moments (count, mean, std, min, max) into dataset moments."""
    counts = np.array([p["count"] for p in parts], dtype=np.float64)
    means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
    stds = np.stack([np.asarray(p["std"], dtype=np.float64) for p in parts])
    shape = (-1,) + (1,) * (means.ndim - 1)
    w = counts.reshape(shape) / counts.sum()
    mean = (w * means).sum(0)
    var = (w * (stds**2 + (means - mean) ** 2)).sum(0)
    return {
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "min": np.min(np.stack([np.asarray(p["min"]) for p in parts]), 0),
        "max": np.max(np.stack([np.asarray(p["max"]) for p in parts]), 0),
        "count": np.array([counts.sum()]),
    }


def _stats_to_json(s: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in s.items()}


# ---------------------------------------------------------------------------------------------- video


class _VideoFileWriter:
    """Incremental H.264 writer for one mp4 holding several episodes; atomic on `close()`."""

    def __init__(
        self, path: Path, fps: float, height: int, width: int, crf: int, gop: int, pix_fmt: str = "yuv420p"
    ) -> None:
        import av

        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self._container = av.open(str(tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        # B-frames / lookahead / mb-tree made libx264 output vary from run to run on small frames (measured at
        # 32-64 px); without them it is deterministic, so a resumed write equals an uninterrupted one.
        self._stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "g": str(gop),
            "threads": "1",
            "bf": "0",
            "x264-params": "rc-lookahead=0:no-mbtree=1",
        }
        self._stream.codec_context.time_base = 1 / rate
        self._n = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self._n
            self._n += 1
            for packet in self._stream.encode(vf):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def decode_video_range(path: Path, start: int, stop: int, fps: float) -> np.ndarray:
    """Decode frames `[start, stop)` (indices counted from the file's first frame) of an mp4.

    Seeks to the keyframe before `start`. Raises ValueError naming the file if frames are missing.
    Returns `(stop - start, H, W, 3)` uint8.
    """
    import av

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = float(stream.time_base)
            t0 = float(stream.start_time or 0) * tb
            if start > 0:
                container.seek(int((start / fps + t0) / tb), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                idx = int(round((float(frame.pts) * tb - t0) * fps)) if frame.pts is not None else None
                if idx is None:
                    raise ValueError("frame without timestamp")
                if idx < start:
                    continue
                if idx >= stop:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot decode video ({exc})") from exc
    if len(out) != stop - start:
        raise ValueError(f"{path}: expected frames [{start}, {stop}) but decoded {len(out)} of them")
    return np.stack(out)


# --------------------------------------------------------------------------------------------- writer


@dataclass
class _Buffered:
    """An added episode waiting for its data file to be written (its frames are already encoded)."""

    actions: np.ndarray
    state: np.ndarray
    extras: dict[str, np.ndarray]
    meta: dict[str, Any]
    stats: dict[str, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.actions)


def _fixed_list(arr: np.ndarray) -> pa.Array:
    """`(N, K)` numpy -> arrow FixedSizeList column."""
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])


def _column_to_numpy(col: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if width == 0:
        return np.zeros((len(col), 0), dtype=np.float32)
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)


class LeRobotWriter:
    """Write `Episode`s into a LeRobot v3.0 store at `root` (resumable, atomic).

    Args:
        root: dataset directory.
        fps: frames per second of every episode added.
        action_space: name of the action space (`nav3`, `ee7`, `humanoid25`, `customD`).
        video_key: feature name of the main camera.
        frames_per_file: frames per data/video file (several episodes per file; an episode never spans two).
        chunks_size: files per chunk directory.
        crf, gop: H.264 quality (0 = lossless coding) and keyframe interval.
        pix_fmt: "yuv420p" (LeRobot's usual format, plays everywhere; at 32-64 px on textured renders
            the mean error was 6-9/255 at crf 18) or "yuv444p" (no chroma subsampling; with crf 0 only the
            RGB->YUV rounding remains, ~0.4/255, at ~5 KB per 64 px frame).
        robot_type: free text stored in info.json.
        info_extra: JSON-serialisable facts stored under `info["actwm"]` (e.g. `metric_spacing`).
        job: what is being written (source, seeds, ...); a partial root written for another job is refused.
        resume: continue a half-written root; if False the root must be empty or absent.

    After `add_episode` for each episode (`num_episodes` counts committed + buffered ones),
    `finalize()` writes the metadata. `committed_episodes` tells a resuming caller how many
    episodes of its source to skip.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: float,
        action_space: str,
        video_key: str = DEFAULT_VIDEO_KEY,
        frames_per_file: int = 2000,
        chunks_size: int = 1000,
        crf: int = 18,
        gop: int = 16,
        pix_fmt: str = "yuv420p",
        robot_type: str | None = None,
        info_extra: dict[str, Any] | None = None,
        job: dict[str, Any] | None = None,
        resume: bool = True,
    ) -> None:
        if fps <= 0 or not math.isfinite(fps):
            raise ValueError(f"LeRobotWriter: fps must be > 0, got {fps}")
        if pix_fmt not in ("yuv420p", "yuv444p"):
            raise ValueError(f"LeRobotWriter: pix_fmt must be yuv420p or yuv444p, got {pix_fmt!r}")
        if not 0 <= crf <= 51:
            raise ValueError(f"LeRobotWriter: crf must be in [0, 51], got {crf}")
        if frames_per_file < 1 or chunks_size < 1:
            raise ValueError("LeRobotWriter: frames_per_file and chunks_size must be >= 1")
        get_action_space(action_space)
        self.root = Path(root)
        self.config = {
            "fps": float(fps),
            "action_space": action_space,
            "video_key": video_key,
            "frames_per_file": int(frames_per_file),
            "chunks_size": int(chunks_size),
            "crf": int(crf),
            "gop": int(gop),
            "pix_fmt": pix_fmt,
            "robot_type": robot_type,
            "job": json.loads(json.dumps(job, default=_json_default)) if job else None,
        }
        self.info_extra = dict(info_extra or {})
        self.features: dict[str, Any] | None = None
        self.files: list[dict[str, int]] = []
        self.tasks: list[str] = []
        self.committed_episodes = 0
        self.committed_frames = 0
        self.complete = (self.root / "meta" / "info.json").is_file()
        self._buffer: list[_Buffered] = []
        self._buffer_frames = 0
        self._video: _VideoFileWriter | None = None
        self._load_progress(resume)

    # -- resume -------------------------------------------------------------------------------------

    def _load_progress(self, resume: bool) -> None:
        progress_path = self.root / PROGRESS_FILE
        if self.complete:
            if not resume:
                raise ValueError(f"{self.root}: already holds a complete dataset (meta/info.json)")
            info = read_json(self.root / "meta" / "info.json")
            self.committed_episodes = int(info["total_episodes"])
            self.committed_frames = int(info["total_frames"])
            return
        if progress_path.is_file():
            if not resume:
                raise ValueError(f"{self.root}: holds a partial dataset ({PROGRESS_FILE}); pass resume=True")
            prog = read_json(progress_path)
            if prog["config"] != self.config:
                diff = {k: (prog["config"].get(k), v) for k, v in self.config.items() if prog["config"].get(k) != v}
                raise ValueError(f"{progress_path}: partial dataset was written with other settings {diff}")
            self.features, self.files, self.tasks = prog["features"], prog["files"], prog["tasks"]
            self.info_extra = {**prog.get("info_extra", {}), **self.info_extra}
            self.committed_episodes = int(prog["num_episodes"])
            self.committed_frames = int(prog["num_frames"])
        elif self.root.exists() and any(self.root.iterdir()):
            raise ValueError(f"{self.root}: exists, is not empty and is not a (partial) actwm LeRobot dataset")
        for stray in self.root.rglob(".*.tmp.*"):  # temp files of a killed run
            stray.unlink()

    @classmethod
    def from_progress(cls, root: str | Path) -> "LeRobotWriter":
        """Re-open a partial root with the settings recorded in its progress marker."""
        prog = read_json(Path(root) / PROGRESS_FILE)
        cfg = dict(prog["config"])
        return cls(root, info_extra=prog.get("info_extra"), resume=True, **cfg)

    @property
    def num_episodes(self) -> int:
        return self.committed_episodes + len(self._buffer)

    # -- features -----------------------------------------------------------------------------------

    def _features_for(self, ep: Episode) -> dict[str, Any]:
        t, h, w, _ = ep.frames.shape
        space = get_action_space(self.config["action_space"])
        d = ep.actions.shape[1]
        feats: dict[str, Any] = {
            self.config["video_key"]: {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.fps": self.config["fps"],
                    "video.height": h + h % 2,
                    "video.width": w + w % 2,
                    "video.channels": 3,
                    "video.codec": "h264",
                    "video.pix_fmt": self.config["pix_fmt"],
                    "video.is_depth_map": False,
                    "has_audio": False,
                },
            },
            "observation.state": {
                "dtype": "float32",
                "shape": [int(ep.state.shape[1]) if ep.state.ndim == 2 else 0],
                "names": ep.meta.get("state_names"),
            },
            "action": {
                "dtype": "float32",
                "shape": [d],
                "names": list(space.names) if space.dim == d else None,
            },
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
        if space.dim != d:
            raise ValueError(f"episode actions have {d} dims but action space {space.name!r} has {space.dim}")
        for key, arr in sorted(ep.extras.items()):
            name = extra_feature_name(key)
            per_frame = list(arr.shape[1:])
            image_like = per_frame[:2] == [h, w] and len(per_frame) in (2, 3)
            feats[name] = {
                "dtype": str(arr.dtype),
                "shape": per_frame if image_like else [int(np.prod(per_frame))],
                "names": None,
                "actwm": {"extra_key": key, "array_shape": per_frame, "storage": "npz" if image_like else "parquet"},
            }
        return feats

    def _check_episode(self, ep: Episode) -> None:
        assert self.features is not None
        feats = self._features_for(ep)
        if feats != self.features:
            diff = sorted(k for k in set(feats) | set(self.features) if feats.get(k) != self.features.get(k))
            raise ValueError(
                f"episode {self.num_episodes} ({ep.meta.get('source', 'no source')}) does not match the dataset's "
                f"features: {diff} differ (all episodes need the same image size, state/action dims and extras)"
            )
        if abs(float(ep.fps) - self.config["fps"]) > 1e-6:
            raise ValueError(
                f"episode {self.num_episodes}: fps {ep.fps} differs from the dataset's {self.config['fps']}"
            )
        if ep.action_space != self.config["action_space"]:
            raise ValueError(
                f"episode {self.num_episodes}: action space {ep.action_space!r} differs from the dataset's "
                f"{self.config['action_space']!r}"
            )
        if len(ep) < 1:
            raise ValueError(f"episode {self.num_episodes}: has no frames")

    # -- adding -------------------------------------------------------------------------------------

    def add_episode(self, ep: Episode) -> int:
        """Buffer one episode (written when its data file is full). Returns its episode index."""
        if self.complete:
            raise ValueError(f"{self.root}: dataset is already finalised")
        if self.features is None:
            self.features = self._features_for(ep)
        self._check_episode(ep)
        if self._buffer and self._buffer_frames + len(ep) > self.config["frames_per_file"]:
            self._flush()
        if self._video is None:
            chunk, file = self._next_file()
            h, w = ep.frames.shape[1:3]
            path = self.root / VIDEO_PATH.format(video_key=self.config["video_key"], chunk_index=chunk, file_index=file)
            self._video = _VideoFileWriter(
                path,
                self.config["fps"],
                h + h % 2,
                w + w % 2,
                self.config["crf"],
                self.config["gop"],
                self.config["pix_fmt"],
            )
        frames = ep.frames
        if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p needs even sides: pad by edge, crop on read
            frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
        try:
            self._video.write(frames)
        except BaseException:
            self._video.abort()
            self._video = None
            raise
        # frames are in the encoder now; keep only what the data/episodes files need
        self._buffer.append(_Buffered(ep.actions, ep.state, ep.extras, ep.meta, self._episode_stats(ep)))
        self._buffer_frames += len(ep)
        task = str(ep.meta.get("task", ""))
        if task not in self.tasks:
            self.tasks.append(task)
        return self.num_episodes - 1

    def _next_file(self) -> tuple[int, int]:
        n = len(self.files)
        return n // self.config["chunks_size"], n % self.config["chunks_size"]

    def _flush(self) -> None:
        """Write the buffered episodes as one data/video/extras/episodes file set, then the progress marker."""
        if not self._buffer:
            return
        assert self.features is not None and self._video is not None
        chunk, file = self._next_file()
        fmt = {"chunk_index": chunk, "file_index": file}
        fps = self.config["fps"]
        eps = self._buffer
        ep0 = self.committed_episodes
        idx0 = self.committed_frames
        lengths = [len(e) for e in eps]
        n = sum(lengths)
        frame_index = np.concatenate([np.arange(t) for t in lengths])
        cols: dict[str, pa.Array] = {}
        state_dim = self.features["observation.state"]["shape"][0]
        if state_dim:
            cols["observation.state"] = _fixed_list(np.concatenate([e.state for e in eps]).astype(np.float32))
        cols["action"] = _fixed_list(np.concatenate([e.actions for e in eps]).astype(np.float32))
        cols["timestamp"] = pa.array((frame_index / fps).astype(np.float32))
        cols["frame_index"] = pa.array(frame_index.astype(np.int64))
        cols["episode_index"] = pa.array(np.repeat(np.arange(ep0, ep0 + len(eps)), lengths).astype(np.int64))
        cols["index"] = pa.array(np.arange(idx0, idx0 + n, dtype=np.int64))
        task_ids = [self.tasks.index(str(e.meta.get("task", ""))) for e in eps]
        cols["task_index"] = pa.array(np.repeat(task_ids, lengths).astype(np.int64))
        npz: dict[str, np.ndarray] = {}
        for name, feat in self.features.items():
            a = feat.get("actwm")
            if not a:
                continue
            arr = np.concatenate([e.extras[a["extra_key"]] for e in eps])
            if a["storage"] == "npz":
                npz[name] = arr
            else:
                cols[name] = _fixed_list(arr.reshape(n, -1))
        data_path = self.root / DATA_PATH.format(**fmt)
        with atomic_path(data_path) as tmp:
            pq.write_table(pa.table(cols), tmp, compression="zstd")
        for name, arr in npz.items():
            with atomic_path(self.root / EXTRAS_PATH.format(feature=name, **fmt)) as tmp:
                np.savez_compressed(tmp, data=arr)
        self._video.close()
        self._video = None
        self._write_episodes_file(eps, ep0, idx0, fmt, task_ids)
        self.files.append({"chunk_index": chunk, "file_index": file, "episodes": len(eps), "frames": n})
        self.committed_episodes += len(eps)
        self.committed_frames += n
        self._buffer, self._buffer_frames = [], 0
        atomic_write_json(
            self.root / PROGRESS_FILE,
            {
                "config": self.config,
                "features": self.features,
                "files": self.files,
                "tasks": self.tasks,
                "info_extra": self.info_extra,
                "num_episodes": self.committed_episodes,
                "num_frames": self.committed_frames,
            },
        )

    def _episode_stats(self, ep: Episode) -> dict[str, dict[str, Any]]:
        assert self.features is not None
        out = {
            self.config["video_key"]: _moments(
                ep.frames[:: max(1, len(ep) // 16)].astype(np.float32) / 255.0, (0, 1, 2)
            )
        }
        out["action"] = _moments(ep.actions, (0,))
        if ep.state.ndim == 2 and ep.state.shape[1]:
            out["observation.state"] = _moments(ep.state, (0,))
        out["timestamp"] = _moments((np.arange(len(ep)) / self.config["fps"])[:, None], (0,))
        for name, feat in self.features.items():
            a = feat.get("actwm")
            if not a:
                continue
            arr = ep.extras[a["extra_key"]]
            if a["storage"] == "npz":
                out[name] = _moments(arr.reshape(-1, 1), (0,))
            else:
                out[name] = _moments(arr.reshape(len(ep), -1), (0,))
        return out

    def _write_episodes_file(
        self, eps: list[_Buffered], ep0: int, idx0: int, fmt: dict[str, int], task_ids: list[int]
    ) -> None:
        fps = self.config["fps"]
        vk = self.config["video_key"]
        rows: dict[str, list[Any]] = {
            k: []
            for k in (
                "episode_index",
                "tasks",
                "length",
                "data/chunk_index",
                "data/file_index",
                "dataset_from_index",
                "dataset_to_index",
                f"videos/{vk}/chunk_index",
                f"videos/{vk}/file_index",
                f"videos/{vk}/from_timestamp",
                f"videos/{vk}/to_timestamp",
                "meta/episodes/chunk_index",
                "meta/episodes/file_index",
                *_META_COLUMNS,
                "meta",
            )
        }
        stats_rows: dict[str, list[Any]] = {}
        start, offset = idx0, 0
        for i, (ep, tid) in enumerate(zip(eps, task_ids)):
            t = len(ep)
            rows["episode_index"].append(ep0 + i)
            rows["tasks"].append([self.tasks[tid]])
            rows["length"].append(t)
            rows["data/chunk_index"].append(fmt["chunk_index"])
            rows["data/file_index"].append(fmt["file_index"])
            rows["dataset_from_index"].append(start)
            rows["dataset_to_index"].append(start + t)
            rows[f"videos/{vk}/chunk_index"].append(fmt["chunk_index"])
            rows[f"videos/{vk}/file_index"].append(fmt["file_index"])
            rows[f"videos/{vk}/from_timestamp"].append(offset / fps)
            rows[f"videos/{vk}/to_timestamp"].append((offset + t) / fps)
            rows["meta/episodes/chunk_index"].append(fmt["chunk_index"])
            rows["meta/episodes/file_index"].append(fmt["file_index"])
            for col in _META_COLUMNS:
                v = ep.meta.get(col)
                rows[col].append(None if v is None else str(v))
            rows["meta"].append(json.dumps(ep.meta, sort_keys=True, default=_json_default))
            for feat, s in ep.stats.items():
                for k, v in s.items():
                    stats_rows.setdefault(f"stats/{feat}/{k}", []).append(
                        np.asarray(v, dtype=np.float64).reshape(-1).tolist()
                    )
            start += t
            offset += t
        table = pa.table({**rows, **stats_rows})
        with atomic_path(self.root / EPISODES_PATH.format(**fmt)) as tmp:
            pq.write_table(table, tmp)

    # -- finalize -----------------------------------------------------------------------------------

    def finalize(self) -> Path:
        """Flush the last file and write stats.json, tasks.parquet and info.json (last). Returns `root`."""
        if self.complete:
            return self.root
        self._flush()
        if self.features is None:
            raise ValueError(f"{self.root}: no episodes were added; nothing to finalise")
        ds_stats = self._aggregate_stats()
        atomic_write_json(self.root / "meta" / "stats.json", ds_stats)
        with atomic_path(self.root / "meta" / "tasks.parquet") as tmp:
            pq.write_table(pa.table({"task_index": list(range(len(self.tasks))), "task": self.tasks}), tmp)
        actwm_info = {
            "action_space": self.config["action_space"],
            "video_key": self.config["video_key"],
            "job": self.config["job"],
            "action_convention": "row t takes frame t to frame t+1 (last row of an episode: zeros); unnormalised",
            "extras_storage": "image-shaped extras (extra_features) in npz files (key 'data') at extras_path, one "
            "per data file and row-aligned with it; kept out of `features` so LeRobot's parquet schema matches",
            "extra_features": {k: v for k, v in self.features.items() if v.get("actwm", {}).get("storage") == "npz"},
            **self.info_extra,
        }
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.config["robot_type"],
            "total_episodes": self.committed_episodes,
            "total_frames": self.committed_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.config["chunks_size"],
            "files_size_in_frames": self.config["frames_per_file"],
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.config["fps"],
            "splits": self._splits(),
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "episodes_path": EPISODES_PATH,
            "extras_path": EXTRAS_PATH,
            "features": {k: v for k, v in self.features.items() if v.get("actwm", {}).get("storage") != "npz"},
            "actwm": actwm_info,
        }
        atomic_write_json(self.root / "meta" / "info.json", info)
        (self.root / PROGRESS_FILE).unlink(missing_ok=True)
        self.complete = True
        return self.root

    def _episode_tables(self) -> Iterator[pa.Table]:
        for f in self.files:
            yield pq.read_table(
                self.root / EPISODES_PATH.format(chunk_index=f["chunk_index"], file_index=f["file_index"])
            )

    def _aggregate_stats(self) -> dict[str, Any]:
        """Merge the per-episode moments stored in the episodes parquet files."""
        assert self.features is not None
        parts: dict[str, list[dict[str, Any]]] = {}
        for table in self._episode_tables():
            cols = [c for c in table.column_names if c.startswith("stats/")]
            d = table.select(cols).to_pydict()
            for i in range(table.num_rows):
                per_feat: dict[str, dict[str, Any]] = {}
                for c in cols:
                    feat, key = c[len("stats/") :].rsplit("/", 1)
                    v = d[c][i]
                    per_feat.setdefault(feat, {})[key] = v[0] if key == "count" else v
                for feat, s in per_feat.items():
                    parts.setdefault(feat, []).append(s)
        out = {}
        for feat, plist in parts.items():
            js = _stats_to_json(merge_stats(plist))
            if feat == self.config["video_key"]:  # LeRobot keeps image stats as (3, 1, 1)
                for k in ("mean", "std", "min", "max"):
                    js[k] = [[[v]] for v in js[k]]
            out[feat] = js
        return out

    def _splits(self) -> dict[str, str]:
        """LeRobot-style `splits` ({name: "start:stop"}) when splits are stored contiguously, else counts."""
        labels: list[str | None] = []
        for table in self._episode_tables():
            labels += table.column("split").to_pylist()
        if not any(labels):
            return {"train": f"0:{len(labels)}"}
        out: dict[str, str] = {}
        for name in sorted({lab for lab in labels if lab}):
            idx = [i for i, lab in enumerate(labels) if lab == name]
            contiguous = idx == list(range(idx[0], idx[-1] + 1))
            out[name] = (
                f"{idx[0]}:{idx[-1] + 1}" if contiguous else f"{len(idx)} episodes (see episodes 'split' column)"
            )
        return out

    def abort(self) -> None:
        """Drop the buffered (uncommitted) episodes; committed files stay for a later resume."""
        if self._video is not None:
            self._video.abort()
            self._video = None
        self._buffer, self._buffer_frames = [], 0


def committed_episodes(root: str | Path) -> int:
    """Episodes already safely written under `root` (0 if absent; all if complete)."""
    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        return int(read_json(root / "meta" / "info.json")["total_episodes"])
    if (root / PROGRESS_FILE).is_file():
        return int(read_json(root / PROGRESS_FILE)["num_episodes"])
    return 0


def is_complete(root: str | Path, job: dict[str, Any] | None = None) -> bool:
    """True when `root` holds a finished dataset; with `job`, it must have been written for that job."""
    info_path = Path(root) / "meta" / "info.json"
    if not info_path.is_file():
        return False
    if job is not None:
        stored = read_json(info_path).get("actwm", {}).get("job")
        if stored != json.loads(json.dumps(job, default=_json_default)):
            raise ValueError(
                f"{root}: already holds a dataset written for another job ({stored}); choose another output"
            )
    return True


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------- reader


class LeRobotDataset:
    """Read a LeRobot dataset (v3.0 or v2.1/v2.0) into `Episode`s, without `lerobot`.

    Attributes: `root`, `info` (meta/info.json), `version`, `fps`, `action_space`, `video_key`,
    `episode_lengths` (list[int]), `num_frames`, `stats` (meta/stats.json or {}).
    `episode(i)` decodes one episode; `episode_arrays(i)` reads its parquet columns only.
    """

    def __init__(self, root: str | Path, *, video_key: str | None = None) -> None:
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            partial = (self.root / PROGRESS_FILE).is_file()
            raise FileNotFoundError(
                f"{info_path}: missing"
                + (" (the dataset is only partially written; re-run the command to finish it)" if partial else "")
            )
        self.info: dict[str, Any] = read_json(info_path)
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in ("v3.0", "v2.1", "v2.0"):
            raise ValueError(
                f"{info_path}: unsupported codebase_version {self.version!r} (supported: v3.0, v2.1, v2.0)"
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise ValueError(f"{info_path}: missing field {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict[str, Any] = self.info["features"]
        self.extra_features: dict[str, Any] = self.info.get("actwm", {}).get("extra_features", {})
        videos = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        actwm = self.info.get("actwm", {})
        self.video_key = video_key or actwm.get("video_key") or (videos[0] if videos else None)
        if self.video_key is None or self.video_key not in self.features:
            raise ValueError(f"{info_path}: no video feature {video_key or ''} (features: {', '.join(self.features)})")
        d = int(self.features["action"]["shape"][0]) if "action" in self.features else 0
        self.action_space = actwm.get("action_space") or f"custom{d}"
        self.stats: dict[str, Any] = (
            read_json(self.root / "meta" / "stats.json") if (self.root / "meta" / "stats.json").is_file() else {}
        )
        self._episodes = self._load_episodes()
        self.episode_lengths = [int(r["length"]) for r in self._episodes]
        self.num_frames = int(sum(self.episode_lengths))
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._npz: OrderedDict[str, np.ndarray] = OrderedDict()
        self._tasks = self._load_tasks()

    # -- metadata -----------------------------------------------------------------------------------

    def _load_episodes(self) -> list[dict[str, Any]]:
        if self.version == "v3.0":
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise FileNotFoundError(f"{self.root / 'meta' / 'episodes'}: no episodes parquet files")
            rows: list[dict[str, Any]] = []
            for f in files:
                t = pq.read_table(f)
                keep = [c for c in t.column_names if not c.startswith("stats/")]
                rows += t.select(keep).to_pylist()
            rows.sort(key=lambda r: r["episode_index"])
        else:
            path = self.root / "meta" / "episodes.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (LeRobot {self.version} lists episodes there)")
            rows = []
            for n, line in enumerate(path.read_text().splitlines()):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}: line {n + 1} is not valid JSON ({exc})") from exc
            rows.sort(key=lambda r: r["episode_index"])
            start = 0
            for r in rows:
                r["dataset_from_index"], r["dataset_to_index"] = start, start + int(r["length"])
                start += int(r["length"])
        if [r["episode_index"] for r in rows] != list(range(len(rows))):
            raise ValueError(f"{self.root}: episode indices are not 0..{len(rows) - 1}")
        return rows

    def _load_tasks(self) -> dict[int, str]:
        p3, p2 = self.root / "meta" / "tasks.parquet", self.root / "meta" / "tasks.jsonl"
        if p3.is_file():
            t = pq.read_table(p3).to_pydict()
            if "task" in t:
                return dict(zip(t["task_index"], t["task"]))
            return dict(zip(t["task_index"], t.get("__index_level_0__", [""] * len(t["task_index"]))))
        if p2.is_file():
            rows = [json.loads(row) for row in p2.read_text().splitlines() if row.strip()]
            return {int(r["task_index"]): r["task"] for r in rows}
        return {}

    def __len__(self) -> int:
        return len(self._episodes)

    def episode_meta(self, i: int) -> dict[str, Any]:
        """JSON meta of episode `i` (scene_id, split, source, task, ... as stored)."""
        r = self._row(i)
        meta = json.loads(r["meta"]) if r.get("meta") else {}
        for col in _META_COLUMNS:
            if r.get(col) is not None and col not in meta:
                meta[col] = r[col]
        if "tasks" in r and r["tasks"] and "task" not in meta:
            meta["task"] = r["tasks"][0]
        return meta

    def splits(self) -> list[str | None]:
        """Stored split label per episode (None where absent)."""
        return [r.get("split") or json.loads(r.get("meta") or "{}").get("split") for r in self._episodes]

    def _row(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self._episodes):
            raise IndexError(f"{self.root}: episode {i} out of range (0..{len(self._episodes) - 1})")
        return self._episodes[i]

    # -- paths --------------------------------------------------------------------------------------

    def _data_file(self, r: dict[str, Any]) -> Path:
        if self.version == "v3.0":
            return self.root / self.info["data_path"].format(
                chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]
            )
        chunk = r["episode_index"] // int(self.info.get("chunks_size", 1000))
        return self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=r["episode_index"])

    def _video_file(self, r: dict[str, Any]) -> tuple[Path, int]:
        """Path of the episode's video and the episode's first frame within it."""
        vk = self.video_key
        if self.version == "v3.0":
            path = self.root / self.info["video_path"].format(
                video_key=vk, chunk_index=r[f"videos/{vk}/chunk_index"], file_index=r[f"videos/{vk}/file_index"]
            )
            return path, int(round(float(r[f"videos/{vk}/from_timestamp"]) * self.fps))
        chunk = r["episode_index"] // int(self.info.get("chunks_size", 1000))
        if "video_path" not in self.info or self.info["video_path"] is None:
            raise ValueError(f"{self.root / 'meta' / 'info.json'}: no video_path template")
        path = self.root / self.info["video_path"].format(
            episode_chunk=chunk, video_key=vk, episode_index=r["episode_index"]
        )
        return path, 0

    # -- arrays -------------------------------------------------------------------------------------

    def _table(self, path: Path) -> pa.Table:
        key = str(path)
        if key not in self._tables:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: data file missing")
            try:
                self._tables[key] = pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ValueError(f"{path}: cannot read parquet ({exc})") from exc
            while len(self._tables) > 4:
                self._tables.popitem(last=False)
        self._tables.move_to_end(key)
        return self._tables[key]

    def episode_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Parquet columns of episode `i` as numpy: `action` (T, D), `state` (T, S), extras in parquet."""
        r = self._row(i)
        path = self._data_file(r)
        table = self._table(path)
        index = table.column("index").to_numpy()
        a, b = int(r["dataset_from_index"]), int(r["dataset_to_index"])
        if self.version == "v3.0":
            lo, hi = np.searchsorted(index, a), np.searchsorted(index, b)
        else:
            lo, hi = 0, table.num_rows
        t = int(r["length"])
        if hi - lo != t:
            raise ValueError(f"{path}: episode {i} should have {t} rows but {hi - lo} were found")
        part = table.slice(lo, t)
        out: dict[str, np.ndarray] = {}
        d = int(self.features["action"]["shape"][0])
        out["action"] = _column_to_numpy(part.column("action"), d).astype(np.float32)
        s = int(self.features.get("observation.state", {"shape": [0]})["shape"][0])
        out["state"] = (
            _column_to_numpy(part.column("observation.state"), s).astype(np.float32)
            if s and "observation.state" in part.column_names
            else np.zeros((t, 0), np.float32)
        )
        out["timestamp"] = (
            part.column("timestamp").to_numpy() if "timestamp" in part.column_names else np.arange(t) / self.fps
        )
        for name, feat in self.features.items():
            a_info = feat.get("actwm")
            if a_info and a_info["storage"] == "parquet":
                width = int(np.prod(a_info["array_shape"]))
                out[a_info["extra_key"]] = _column_to_numpy(part.column(name), width).reshape(t, *a_info["array_shape"])
        return out

    def _npz_extra(self, name: str, r: dict[str, Any]) -> np.ndarray:
        path = self.root / self.info.get("extras_path", EXTRAS_PATH).format(
            feature=name, chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]
        )
        key = str(path)
        if key not in self._npz:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: extras file missing")
            with np.load(path) as z:
                self._npz[key] = z["data"]
            while len(self._npz) > 2:
                self._npz.popitem(last=False)
        arr = self._npz[key]
        table = self._table(self._data_file(r))
        first = int(table.column("index")[0].as_py())
        lo = int(r["dataset_from_index"]) - first
        return arr[lo : lo + int(r["length"])]

    def frames(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded `(stop - start, H, W, 3)` uint8 frames `[start, stop)` of episode `i` (default: all)."""
        r = self._row(i)
        path, first = self._video_file(r)
        t = int(r["length"])
        stop = t if stop is None else stop
        if not 0 <= start < stop <= t:
            raise IndexError(f"{self.root}: frames [{start}, {stop}) outside episode {i} of length {t}")
        frames = decode_video_range(path, first + start, first + stop, self.fps)
        h, w = self.features[self.video_key]["shape"][:2]
        return frames[:, :h, :w]

    def episode(self, i: int, *, with_extras: bool = True) -> Episode:
        """Episode `i` with decoded frames, actions, state, extras and meta."""
        r = self._row(i)
        arrays = self.episode_arrays(i)
        extras = {k: v for k, v in arrays.items() if k not in ("action", "state", "timestamp")}
        if with_extras and self.version == "v3.0":
            for name, feat in self.extra_features.items():
                a_info = feat.get("actwm")
                if a_info and a_info["storage"] == "npz":
                    extras[a_info["extra_key"]] = self._npz_extra(name, r)
        meta = self.episode_meta(i)
        return Episode(
            frames=self.frames(i),
            actions=arrays["action"],
            state=arrays["state"],
            fps=self.fps,
            action_space=self.action_space,
            extras=extras if with_extras else {},
            meta=meta,
        )

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def __getstate__(self) -> dict[str, Any]:  # keep DataLoader workers light
        state = dict(self.__dict__)
        state["_tables"], state["_npz"] = OrderedDict(), OrderedDict()
        return state
