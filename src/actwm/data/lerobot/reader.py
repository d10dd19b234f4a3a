"""LeRobot reader (v3.0 and v2.1/v2.0) with pyarrow + PyAV only (no `lerobot`).

The dataset is untrusted: every path comes from an `info.json` template checked by `format.check_template`
and resolved inside the root by `format.format_path`; a missing column, truncated file or missing video
raises a ValueError / FileNotFoundError naming the file. `verify()` checks every file without decoding.
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actwm.data.lerobot.format import (
    EXTRAS_PATH,
    INFO_PATH,
    META_COLUMNS,
    PROGRESS_FILE,
    STATS_PATH,
    check_features,
    check_template,
    column_to_numpy,
    format_path,
    read_tasks,
)
from actwm.episode import Episode
from actwm.io import read_json
from actwm.video import read_video, video_info

SUPPORTED_VERSIONS = ("v3.0", "v2.1", "v2.0")


class EpisodeIndexError(IndexError, ValueError):
    """An episode index outside the dataset (an IndexError for iteration, a ValueError for the CLIs)."""


class LeRobotDataset:
    """Read a LeRobot dataset (v3.0 or v2.1/v2.0) into `Episode`s, without `lerobot`.

    Attributes: `root`, `info` (meta/info.json), `version`, `fps`, `action_space`, `video_key`,
    `episode_lengths` (list[int]), `num_frames`, `stats` (meta/stats.json or {}).
    `episode(i)` decodes one episode; `episode_arrays(i)` reads its parquet columns only.
    """

    def __init__(self, root: str | Path, *, video_key: str | None = None) -> None:
        self.root = Path(root)
        self.info_path = self.root / INFO_PATH
        self.info: dict[str, Any] = self._load_info()
        self.version = str(self.info["codebase_version"])
        self.fps = float(self.info["fps"])
        self.features: dict[str, Any] = self.info["features"]
        actwm = self.info.get("actwm")
        actwm = {} if actwm is None else actwm
        if not isinstance(actwm, dict):
            raise ValueError(f"{self.info_path}: field 'actwm' must be an object")
        self.extra_features: dict[str, Any] = actwm.get("extra_features", {})
        check_features(self.features, self.extra_features, self.info_path)
        videos = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        self.video_key = video_key or actwm.get("video_key") or (videos[0] if videos else None)
        if self.video_key is None or self.features.get(self.video_key, {}).get("dtype") != "video":
            raise ValueError(
                f"{self.info_path}: no video feature {video_key or ''} (features: {', '.join(self.features)})"
            )
        d = int(self.features["action"]["shape"][0]) if "action" in self.features else 0
        self.action_space = actwm.get("action_space") or f"custom{d}"
        self.stats: dict[str, Any] = read_json(self.root / STATS_PATH) if (self.root / STATS_PATH).is_file() else {}
        self._episodes = self._load_episodes()
        if not self._episodes:
            raise ValueError(f"{self.root}: holds no episodes")
        self.episode_lengths = [int(r["length"]) for r in self._episodes]
        self.num_frames = int(sum(self.episode_lengths))
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._npz: OrderedDict[str, np.ndarray] = OrderedDict()
        self._tasks = self._load_tasks()

    # -- metadata -----------------------------------------------------------------------------------

    def _load_info(self) -> dict[str, Any]:
        """meta/info.json, checked: version, required fields, path templates."""
        if not self.info_path.is_file():
            partial = (self.root / PROGRESS_FILE).is_file()
            raise FileNotFoundError(
                f"{self.info_path}: missing"
                + (" (the dataset is only partially written; re-run the command to finish it)" if partial else "")
            )
        info = read_json(self.info_path)
        if not isinstance(info, dict):
            raise ValueError(f"{self.info_path}: must hold a JSON object")
        version = str(info.get("codebase_version", ""))
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"{self.info_path}: unsupported codebase_version {version!r} "
                f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
            )
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise ValueError(f"{self.info_path}: missing field {key!r}")
        if not isinstance(info["features"], dict):
            raise ValueError(f"{self.info_path}: field 'features' must be an object")
        try:
            fps = float(info["fps"])
        except (TypeError, ValueError):
            fps = float("nan")
        if not fps > 0 or fps == float("inf"):
            raise ValueError(f"{self.info_path}: field 'fps' must be a positive number, got {info['fps']!r}")
        for field in ("data_path", "video_path", "extras_path"):
            if info.get(field) is not None:
                check_template(info[field], field, self.info_path)
        return info

    def _load_episodes(self) -> list[dict[str, Any]]:
        if self.version == "v3.0":
            rows = self._load_episodes_v3()
        else:
            rows = self._load_episodes_v2()
        if [r.get("episode_index") for r in rows] != list(range(len(rows))):
            raise ValueError(f"{self.root}: episode indices are not 0..{len(rows) - 1}")
        for r in rows:
            if not isinstance(r.get("length"), int) or r["length"] < 1:
                raise ValueError(f"{self.root}: episode {r['episode_index']} has length {r.get('length')!r}")
        return rows

    def _load_episodes_v3(self) -> list[dict[str, Any]]:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{self.root / 'meta' / 'episodes'}: no episodes parquet files")
        rows: list[dict[str, Any]] = []
        required = ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index")
        for f in files:
            t = _read_parquet(f, "episodes file")
            missing = [c for c in (*required, "dataset_to_index") if c not in t.column_names]
            if missing:
                raise ValueError(f"{f}: episodes table lacks columns {missing}")
            rows += t.select([c for c in t.column_names if not c.startswith("stats/")]).to_pylist()
        return sorted(rows, key=lambda r: r["episode_index"])

    def _load_episodes_v2(self) -> list[dict[str, Any]]:
        path = self.root / "meta" / "episodes.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (LeRobot {self.version} lists episodes there)")
        rows = []
        for n, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {n + 1} is not valid JSON ({exc})") from exc
                if not isinstance(row, dict) or "episode_index" not in row or "length" not in row:
                    raise ValueError(f"{path}: line {n + 1} needs episode_index and length")
                rows.append(row)
        rows.sort(key=lambda r: r["episode_index"])
        start = 0
        for r in rows:
            r["dataset_from_index"], r["dataset_to_index"] = start, start + int(r["length"])
            start += int(r["length"])
        return rows

    def _load_tasks(self) -> dict[int, str]:
        p3, p2 = self.root / "meta" / "tasks.parquet", self.root / "meta" / "tasks.jsonl"
        if p3.is_file():
            return read_tasks(p3)
        if p2.is_file():
            try:
                rows = [json.loads(row) for row in p2.read_text().splitlines() if row.strip()]
                return {int(r["task_index"]): str(r["task"]) for r in rows}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{p2}: needs one JSON object with task_index and task per line ({exc})") from exc
        return {}

    def __len__(self) -> int:
        return len(self._episodes)

    def episode_meta(self, i: int) -> dict[str, Any]:
        """JSON meta of episode `i` (scene_id, split, source, task, ... as stored)."""
        r = self._row(i)
        try:
            meta = json.loads(r["meta"]) if r.get("meta") else {}
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.root / 'meta' / 'episodes'}: episode {i} has a bad 'meta' ({exc})") from exc
        for col in META_COLUMNS:
            if r.get(col) is not None and col not in meta:
                meta[col] = r[col]
        if "tasks" in r and r["tasks"] and "task" not in meta:
            meta["task"] = r["tasks"][0]
        return meta

    def splits(self) -> list[str | None]:
        """Stored split label per episode (None where absent)."""
        return [r.get("split") or self.episode_meta(i).get("split") for i, r in enumerate(self._episodes)]

    def _row(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self._episodes):
            raise EpisodeIndexError(f"{self.root}: episode {i} out of range (0..{len(self._episodes) - 1})")
        return self._episodes[i]

    # -- paths (all resolved inside the root) -------------------------------------------------------

    def _data_file(self, r: dict[str, Any]) -> Path:
        tpl = self.info["data_path"]
        if self.version == "v3.0":
            idx = {"chunk_index": r["data/chunk_index"], "file_index": r["data/file_index"]}
            return format_path(self.root, tpl, "data_path", self.info_path, **idx)
        chunk = r["episode_index"] // int(self.info.get("chunks_size", 1000))
        return format_path(
            self.root, tpl, "data_path", self.info_path, episode_chunk=chunk, episode_index=r["episode_index"]
        )

    def _video_file(self, r: dict[str, Any]) -> tuple[Path, int]:
        """Path of the episode's video and the episode's first frame within it."""
        vk, tpl = self.video_key, self.info.get("video_path")
        if tpl is None:
            raise ValueError(f"{self.info_path}: no video_path template")
        if self.version == "v3.0":
            cols = [f"videos/{vk}/{k}" for k in ("chunk_index", "file_index", "from_timestamp")]
            if any(c not in r for c in cols):
                raise ValueError(f"{self.root / 'meta' / 'episodes'}: episodes table lacks {cols}")
            path = format_path(
                self.root,
                tpl,
                "video_path",
                self.info_path,
                video_key=vk,
                chunk_index=r[cols[0]],
                file_index=r[cols[1]],
            )
            try:
                return path, int(round(float(r[cols[2]]) * self.fps))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{self.root / 'meta' / 'episodes'}: bad {cols[2]} {r[cols[2]]!r}") from exc
        chunk = r["episode_index"] // int(self.info.get("chunks_size", 1000))
        path = format_path(
            self.root, tpl, "video_path", self.info_path, episode_chunk=chunk, video_key=vk,
            episode_index=r["episode_index"],
        )  # fmt: skip
        return path, 0

    def _npz_file(self, name: str, r: dict[str, Any]) -> Path:
        tpl = self.info.get("extras_path", EXTRAS_PATH)
        idx = {"chunk_index": r["data/chunk_index"], "file_index": r["data/file_index"]}
        return format_path(self.root, tpl, "extras_path", self.info_path, feature=name, **idx)

    # -- arrays -------------------------------------------------------------------------------------

    def _table(self, path: Path) -> pa.Table:
        key = str(path)
        if key not in self._tables:
            self._tables[key] = _read_parquet(path, "data file")
            while len(self._tables) > 4:
                self._tables.popitem(last=False)
        self._tables.move_to_end(key)
        return self._tables[key]

    def episode_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Parquet columns of episode `i` as numpy: `action` (T, D), `state` (T, S), extras in parquet."""
        r = self._row(i)
        path = self._data_file(r)
        table = self._table(path)
        t = int(r["length"])
        if self.version == "v3.0":
            index = _column(table, "index", path).to_numpy()
            lo, hi = (
                np.searchsorted(index, int(r["dataset_from_index"])),
                np.searchsorted(index, int(r["dataset_to_index"])),
            )
        else:
            lo, hi = 0, table.num_rows
        if hi - lo != t:
            raise ValueError(f"{path}: episode {i} should have {t} rows but {hi - lo} were found")
        part = table.slice(lo, t)
        d = int(self.features["action"]["shape"][0]) if "action" in self.features else 0
        if not d:
            raise ValueError(f"{self.info_path}: no 'action' feature")
        out = {"action": _array(part, "action", d, path).astype(np.float32)}
        s = int(self.features.get("observation.state", {"shape": [0]})["shape"][0])
        out["state"] = (
            _array(part, "observation.state", s, path).astype(np.float32) if s else np.zeros((t, 0), np.float32)
        )
        ts = part.column("timestamp").to_numpy() if "timestamp" in part.column_names else np.arange(t) / self.fps
        out["timestamp"] = ts
        for name, feat in self.features.items():
            a_info = feat.get("actwm")
            if a_info and a_info["storage"] == "parquet":
                shape = a_info["array_shape"]
                arr = _array(part, name, int(np.prod(shape)), path)
                out[a_info["extra_key"]] = arr.reshape(t, *shape)
        return out

    def _npz_extra(self, name: str, r: dict[str, Any]) -> np.ndarray:
        path = self._npz_file(name, r)
        key = str(path)
        if key not in self._npz:
            self._npz[key] = _read_npz(path)  # type: ignore[assignment]
            while len(self._npz) > 2:
                self._npz.popitem(last=False)
        arr = self._npz[key]
        data_path = self._data_file(r)
        first = int(_column(self._table(data_path), "index", data_path)[0].as_py())
        lo = int(r["dataset_from_index"]) - first
        if lo < 0 or lo + int(r["length"]) > len(arr):
            raise ValueError(
                f"{path}: holds {len(arr)} rows, episode {r['episode_index']} needs rows up to {lo + r['length']}"
            )
        return arr[lo : lo + int(r["length"])]

    def frames(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded `(stop - start, H, W, 3)` uint8 frames `[start, stop)` of episode `i` (default: all)."""
        r = self._row(i)
        path, first = self._video_file(r)
        t = int(r["length"])
        stop = t if stop is None else stop
        if not 0 <= start < stop <= t:
            raise EpisodeIndexError(f"{self.root}: frames [{start}, {stop}) outside episode {i} of length {t}")
        frames, _ = read_video(path, first + start, first + stop, fps=self.fps)
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
        return Episode(
            frames=self.frames(i),
            actions=arrays["action"],
            state=arrays["state"],
            fps=self.fps,
            action_space=self.action_space,
            extras=extras if with_extras else {},
            meta=self.episode_meta(i),
        )

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def __getstate__(self) -> dict[str, Any]:  # keep DataLoader workers light
        state = dict(self.__dict__)
        state["_tables"], state["_npz"] = OrderedDict(), OrderedDict()
        return state

    # -- integrity ----------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check every file the episodes need, cheaply (no video decoding, data files read by column "index"
        only): data parquet readable with every feature column and each episode's rows, video files present
        and long enough, npz extras readable. Raises ValueError / FileNotFoundError naming the broken file."""
        columns = [k for k, f in self.features.items() if f.get("dtype") not in ("video", "image")]
        by_file: dict[Path, list[dict[str, Any]]] = {}
        videos: dict[Path, int] = {}
        npz: set[Path] = set()
        for r in self._episodes:
            by_file.setdefault(self._data_file(r), []).append(r)
            video, first = self._video_file(r)
            videos[video] = max(videos.get(video, 0), first + int(r["length"]))
            if self.version == "v3.0":
                for name, feat in self.extra_features.items():
                    if (feat.get("actwm") or {}).get("storage") == "npz":
                        npz.add(self._npz_file(name, r))
        for path, rows in by_file.items():
            _check_data_file(path, rows, {c: self.features[c]["shape"] for c in columns}, self.version == "v3.0")
        for video, needed in videos.items():
            _check_video(video, needed)
        for path in sorted(npz):
            _read_npz(path, header_only=True)


def _check_data_file(path: Path, rows: list[dict[str, Any]], columns: dict[str, list[int]], by_index: bool) -> None:
    """The data parquet opens, has every feature column (fixed-size lists of the feature's width), and holds each
    episode's rows."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file missing")
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: columns {missing} of info.json's features are missing (has {names})")
        for name, shape in columns.items():
            kind = pf.schema_arrow.field(name).type
            if pa.types.is_fixed_size_list(kind) and kind.list_size != int(np.prod(shape)):
                raise ValueError(
                    f"{path}: column {name!r} holds {kind.list_size} numbers per row, info.json says {shape}"
                )
        index = pf.read(columns=["index"]).column("index").to_numpy() if by_index else None
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: cannot read parquet ({exc})") from exc
    for r in rows:
        if index is None:
            found = pf.metadata.num_rows
        else:
            found = int(np.searchsorted(index, r["dataset_to_index"]) - np.searchsorted(index, r["dataset_from_index"]))
        if found != int(r["length"]):
            raise ValueError(
                f"{path}: episode {r['episode_index']} should have {r['length']} rows but {found} were found"
            )


def _read_parquet(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} missing")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: cannot read parquet ({exc})") from exc


def _read_npz(path: Path, header_only: bool = False) -> np.ndarray | None:
    """The `data` array of an npz extras file (no pickles); `header_only`: just check that it opens."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: extras file missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "data" not in z.files:
                raise ValueError(f"{path}: no 'data' array (has {z.files})")
            return None if header_only else z["data"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read npz extras ({exc})") from exc


def _array(table: pa.Table, name: str, width: int, path: Path) -> np.ndarray:
    """Column `name` of `width` numbers per row as `(rows, width)` numpy; a column of another width raises."""
    try:
        return column_to_numpy(_column(table, name, path), width)
    except (ValueError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: column {name!r} does not hold {width} numbers per row as info.json says") from exc


def _column(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ValueError(f"{path}: column {name!r} missing (columns: {', '.join(table.column_names)})")
    return table.column(name)


def _check_video(path: Path, needed: int) -> None:
    """The video exists, opens, and lasts at least `needed` frames (by its container's metadata)."""
    n = video_info(path).frames
    if n < needed:
        raise ValueError(f"{path}: holds {n} frames, the episodes need {needed}")
