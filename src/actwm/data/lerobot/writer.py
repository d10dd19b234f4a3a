"""LeRobot v3.0 writer: `Episode`s -> a store, atomic and resumable.

Episodes are buffered until a data file is full, then its parquet, mp4, npz and episodes parquet are
written (each atomically) and `meta/.actwm_progress.json` records the committed files. Re-opening the writer
on a half-written root continues after the last committed episode (temp files of a killed run are removed);
`finalize()` writes `stats.json`, `tasks.parquet` and, last, `info.json`. A root with `info.json` is complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actwm.actions import get_action_space
from actwm.data.lerobot.format import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_VIDEO_KEY,
    EPISODES_PATH,
    EXTRAS_PATH,
    INFO_PATH,
    PROGRESS_FILE,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    check_feature_name,
    features_for,
    format_path,
    json_default,
    remove_temp_files,
    tasks_table,
)
from actwm.data.lerobot.stats import aggregate_stats, episode_stats
from actwm.data.lerobot.tables import Buffered, data_tables, episodes_table
from actwm.episode import Episode
from actwm.io import atomic_path, atomic_write_json, read_json
from actwm.video import Mp4Writer


def check_output_dir(root: str | Path, what: str = "output") -> Path:
    """Refuse an output directory that cannot be written, before any work: it must be a directory (or not exist)
    and writable. Probed for real (a directory created and removed, a temp file written and removed), so it holds
    for root and on read-only file systems too. Leaves nothing behind. Raises ValueError naming `what` and path."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{what} {root}: exists and is not a directory")
    created: list[Path] = []
    probe = root
    while not probe.exists() and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {root}: cannot be created, {probe} is not a directory")
    try:
        for d in reversed(created):
            d.mkdir()
        fd, tmp = tempfile.mkstemp(prefix=".actwm-write-test.", suffix=".tmp", dir=root)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"{what} {root}: not writable ({exc.strerror or exc})") from exc
    finally:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
    return root


def check_writer_settings(*, frames_per_file: int, crf: int, pix_fmt: str, chunks_size: int = 1000) -> None:
    """Refuse settings the writer cannot use (callers check them before any work; the writer again)."""
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise ValueError(f"--pix-fmt must be yuv420p or yuv444p, got {pix_fmt!r}")
    if not 0 <= crf <= 51:
        raise ValueError(f"--crf must be in [0, 51], got {crf}")
    if frames_per_file < 1:
        raise ValueError(f"--frames-per-file must be >= 1, got {frames_per_file}")
    if chunks_size < 1:
        raise ValueError(f"chunks_size must be >= 1, got {chunks_size}")


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
        check_writer_settings(frames_per_file=frames_per_file, crf=crf, pix_fmt=pix_fmt, chunks_size=chunks_size)
        get_action_space(action_space)
        check_feature_name(video_key, "LeRobotWriter: video_key")
        self.root = check_output_dir(root, "dataset directory")
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
            "job": json.loads(json.dumps(job, default=json_default)) if job else None,
        }
        self.info_extra = dict(info_extra or {})
        self.features: dict[str, Any] | None = None
        self.files: list[dict[str, int]] = []
        self.tasks: list[str] = []
        self.committed_episodes = 0
        self.committed_frames = 0
        self.complete = (self.root / INFO_PATH).is_file()
        self._buffer: list[Buffered] = []
        self._buffer_frames = 0
        self._video: Mp4Writer | None = None
        self._load_progress(resume)

    # -- resume -------------------------------------------------------------------------------------

    def _load_progress(self, resume: bool) -> None:
        progress_path = self.root / PROGRESS_FILE
        if self.complete:
            if not resume:
                raise ValueError(f"{self.root}: already holds a complete dataset ({INFO_PATH})")
            info = read_json(self.root / INFO_PATH)
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
        if self.root.is_dir():
            remove_temp_files(self.root)  # temp files of a killed run

    @classmethod
    def from_progress(cls, root: str | Path) -> "LeRobotWriter":
        """Re-open a partial root with the settings recorded in its progress marker."""
        prog = read_json(Path(root) / PROGRESS_FILE)
        cfg = dict(prog["config"])
        return cls(root, info_extra=prog.get("info_extra"), resume=True, **cfg)

    @property
    def num_episodes(self) -> int:
        return self.committed_episodes + len(self._buffer)

    # -- adding -------------------------------------------------------------------------------------

    def _features_for(self, ep: Episode) -> dict[str, Any]:
        c = self.config
        return features_for(ep, c["action_space"], c["video_key"], c["fps"], c["pix_fmt"])

    def _check_episode(self, ep: Episode) -> None:
        assert self.features is not None
        n = self.num_episodes
        feats = self._features_for(ep)
        if feats != self.features:
            diff = sorted(k for k in set(feats) | set(self.features) if feats.get(k) != self.features.get(k))
            raise ValueError(
                f"episode {n} ({ep.meta.get('source', 'no source')}) does not match the dataset's "
                f"features: {diff} differ (all episodes need the same image size, state/action dims and extras)"
            )
        if abs(float(ep.fps) - self.config["fps"]) > 1e-6:
            raise ValueError(f"episode {n}: fps {ep.fps} differs from the dataset's {self.config['fps']}")
        if ep.action_space != self.config["action_space"]:
            raise ValueError(
                f"episode {n}: action space {ep.action_space!r} differs from the dataset's "
                f"{self.config['action_space']!r}"
            )
        if len(ep) < 1:
            raise ValueError(f"episode {n}: has no frames")

    def add_episode(self, ep: Episode) -> int:
        """Buffer one episode (written when its data file is full). Returns its episode index."""
        if self.complete:
            raise ValueError(f"{self.root}: dataset is already finalised")
        first = self.features is None
        if first:
            self.features = self._features_for(ep)
        try:
            self._check_episode(ep)
        except ValueError:
            if first:
                self.features = None
            raise
        if first and not (self.root / PROGRESS_FILE).is_file():
            self._write_progress()  # marks the root as ours before any data file: a run killed now can resume
        if self._buffer and self._buffer_frames + len(ep) > self.config["frames_per_file"]:
            self._flush()
        frames = ep.frames
        if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p needs even sides: pad by edge, crop on read
            frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
        if self._video is None:
            c = self.config
            chunk, file = self._next_file()
            path = self._path(VIDEO_PATH, "video_path", video_key=c["video_key"], chunk_index=chunk, file_index=file)
            h, w = frames.shape[1:3]
            self._video = Mp4Writer(path, c["fps"], h, w, crf=c["crf"], gop=c["gop"], pix_fmt=c["pix_fmt"])
        try:
            self._video.write(frames)
        except BaseException:
            self._video.abort()
            self._video = None
            raise
        # frames are in the encoder now; keep only what the data/episodes files need
        stats = episode_stats(ep, self.features, self.config["video_key"], self.config["fps"])
        self._buffer.append(Buffered(ep.actions, ep.state, ep.extras, ep.meta, stats))
        self._buffer_frames += len(ep)
        task = str(ep.meta.get("task", ""))
        if task not in self.tasks:
            self.tasks.append(task)
        return self.num_episodes - 1

    def _path(self, template: str, field: str, **values: Any) -> Path:
        """A file of the store, refused unless it lies inside the root (feature names come from the source)."""
        return format_path(self.root, template, field, f"LeRobotWriter({self.root})", **values)

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
        fps, eps, ep0, idx0 = self.config["fps"], self._buffer, self.committed_episodes, self.committed_frames
        task_ids = [self.tasks.index(str(e.meta.get("task", ""))) for e in eps]
        # 1. data parquet and npz extras
        table, npz = data_tables(eps, self.features, fps, ep0, idx0, task_ids)
        with atomic_path(self._path(DATA_PATH, "data_path", **fmt)) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        for name, arr in npz.items():
            with atomic_path(self._path(EXTRAS_PATH, "extras_path", feature=name, **fmt)) as tmp:
                np.savez_compressed(tmp, data=arr)
        # 2. the video file holding these episodes
        self._video.close()
        self._video = None
        # 3. the episodes parquet, then the progress marker that commits the file set
        self._write_episodes_file(eps, ep0, idx0, fmt, task_ids)
        self.files.append({**fmt, "episodes": len(eps), "frames": table.num_rows})
        self.committed_episodes += len(eps)
        self.committed_frames += table.num_rows
        self._buffer, self._buffer_frames = [], 0
        self._write_progress()

    def _write_progress(self) -> None:
        """Record the committed file sets (and the settings a resume must match) in the progress marker."""
        progress = {
            "config": self.config,
            "features": self.features,
            "files": self.files,
            "tasks": self.tasks,
            "info_extra": self.info_extra,
            "num_episodes": self.committed_episodes,
            "num_frames": self.committed_frames,
        }
        atomic_write_json(self.root / PROGRESS_FILE, progress)

    def _write_episodes_file(
        self, eps: list[Buffered], ep0: int, idx0: int, fmt: dict[str, int], task_ids: list[int]
    ) -> None:
        c = self.config
        table = episodes_table(
            eps, self.tasks, task_ids, video_key=c["video_key"], fps=c["fps"], ep0=ep0, idx0=idx0, fmt=fmt
        )
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
        atomic_write_json(self.root / STATS_PATH, aggregate_stats(self._episode_tables(), self.config["video_key"]))
        with atomic_path(self.root / TASKS_PATH) as tmp:
            pq.write_table(tasks_table(self.tasks), tmp)
        atomic_write_json(self.root / INFO_PATH, self._info())
        (self.root / PROGRESS_FILE).unlink(missing_ok=True)
        self.complete = True
        return self.root

    def _info(self) -> dict[str, Any]:
        """The content of meta/info.json."""
        assert self.features is not None
        npz_features = {k: v for k, v in self.features.items() if v.get("actwm", {}).get("storage") == "npz"}
        actwm_info = {
            "action_space": self.config["action_space"],
            "video_key": self.config["video_key"],
            "job": self.config["job"],
            "action_convention": "row t takes frame t to frame t+1 (last row of an episode: zeros); unnormalised",
            "extras_storage": "image-shaped extras (extra_features) in npz files (key 'data') at extras_path, one "
            "per data file and row-aligned with it; kept out of `features` so LeRobot's parquet schema matches",
            "extra_features": npz_features,
            **self.info_extra,
        }
        return {
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
            "features": {k: v for k, v in self.features.items() if k not in npz_features},
            "actwm": actwm_info,
        }

    def _episode_tables(self) -> Iterator[pa.Table]:
        for f in self.files:
            yield pq.read_table(
                self.root / EPISODES_PATH.format(chunk_index=f["chunk_index"], file_index=f["file_index"])
            )

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
    if (root / INFO_PATH).is_file():
        return int(read_json(root / INFO_PATH)["total_episodes"])
    if (root / PROGRESS_FILE).is_file():
        return int(read_json(root / PROGRESS_FILE)["num_episodes"])
    return 0


def is_complete(root: str | Path, job: dict[str, Any] | None = None) -> bool:
    """True when `root` holds a finished dataset; with `job`, it must have been written for that job."""
    info_path = Path(root) / INFO_PATH
    if not info_path.is_file():
        return False
    if job is not None:
        stored = read_json(info_path).get("actwm", {}).get("job")
        if stored != json.loads(json.dumps(job, default=json_default)):
            raise ValueError(
                f"{root}: already holds a dataset written for another job ({stored}); choose another output"
            )
    return True
