"""The LeRobot v3.0 on-disk format: path templates, feature descriptions, tasks table, and safe path resolution.

A dataset is untrusted input: every path formatted from its `info.json` templates and its feature names is
checked to stay inside the dataset root before it is read or written (`resolve_in_root`); templates may name
only the fields LeRobot defines (`check_template`), and feature names used in paths may not contain a path
separator (LeRobot's own rule, `check_feature_name`).
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actwm.actions import get_action_space
from actwm.episode import Episode

CODEBASE_VERSION = "v3.0"
DEFAULT_VIDEO_KEY = "observation.images.front"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EXTRAS_PATH = "extras/{feature}/chunk-{chunk_index:03d}/file-{file_index:03d}.npz"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
PROGRESS_FILE = "meta/.actwm_progress.json"
TEMP_GLOB = ".*.tmp*"  # temp files of actwm.io.atomic_path (".<stem>.<random>.tmp<suffix>")

# Fields each template of info.json may use (v3.0 and v2.1 layouts).
TEMPLATE_FIELDS = {
    "data_path": {"chunk_index", "file_index", "episode_chunk", "episode_index"},
    "video_path": {"chunk_index", "file_index", "episode_chunk", "episode_index", "video_key"},
    "extras_path": {"chunk_index", "file_index", "feature"},
}

# Episode.extras key -> feature name (others become `observation.<key>`).
EXTRA_FEATURES = {
    "intrinsics": "observation.camera.intrinsics",
    "extrinsics": "observation.camera.extrinsics",
    "pose": "observation.pose",
    "depth": "observation.depth",
    "segmentation": "observation.segmentation",
}
META_COLUMNS = ("scene_id", "split", "source")


def extra_feature_name(key: str) -> str:
    """Feature name of the Episode extra `key` (checked to be usable in a path)."""
    name = EXTRA_FEATURES.get(key, f"observation.{key}")
    check_feature_name(name, f"episode extra {key!r}")
    return name


# ----------------------------------------------------------------------------------------- path safety


def check_feature_name(name: str, where: str) -> str:
    """Refuse feature names that could leave a directory when used in a path (LeRobot forbids '/' too)."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{where}: feature name {name!r} is not allowed (empty, '.', '..', or has '/', '\\\\')")
    return name


def check_features(features: Any, extra_features: Any, where: str | Path) -> None:
    """info.json's `features` and `actwm.extra_features`: objects with a dtype and a shape of positive ints;
    names used in paths (videos, actwm extras) and extras keys checked by `check_feature_name`."""
    for group, feats in (("features", features), ("actwm.extra_features", extra_features)):
        if not isinstance(feats, dict):
            raise ValueError(f"{where}: field {group!r} must be an object")
        for name, feat in feats.items():
            what = f"{where}: {group} {name!r}"
            shape = feat.get("shape") if isinstance(feat, dict) else None
            if not isinstance(feat, dict) or not isinstance(feat.get("dtype"), str):
                raise ValueError(f"{what} must be an object with a 'dtype'")
            if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                raise ValueError(f"{what}: 'shape' must be a list of non-negative integers, got {shape!r}")
            if feat["dtype"] == "video":
                check_feature_name(name, f"{where}: {group}")
                if len(shape) != 3 or min(shape) < 1:
                    raise ValueError(f"{what}: a video's shape must be [height, width, channels], got {shape}")
            if feat.get("actwm") is not None:
                _check_actwm_feature(name, feat, shape, what, f"{where}: {group}")


def _check_actwm_feature(name: str, feat: dict[str, Any], shape: list[int], what: str, group: str) -> None:
    a = feat["actwm"]
    check_feature_name(name, group)
    if not isinstance(a, dict) or a.get("storage") not in ("npz", "parquet"):
        raise ValueError(f"{what}: 'actwm' must be an object with storage 'npz' or 'parquet'")
    check_feature_name(a.get("extra_key"), f"{what} actwm.extra_key")
    arr = a.get("array_shape")
    if not isinstance(arr, list) or not all(isinstance(n, int) and n >= 1 for n in arr):
        raise ValueError(f"{what}: actwm.array_shape must be a list of positive integers, got {arr!r}")
    if a["storage"] == "parquet" and shape != [int(np.prod(arr))]:
        raise ValueError(f"{what}: shape {shape} does not hold actwm.array_shape {arr}")


def check_template(template: Any, field: str, where: str | Path) -> str:
    """A path template of info.json: a relative string whose `{...}` fields are plain names LeRobot defines."""
    if not isinstance(template, str) or not template:
        raise ValueError(f"{where}: field {field!r} must be a non-empty path template, got {template!r}")
    allowed = TEMPLATE_FIELDS[field]
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{where}: field {field!r} is not a valid template ({exc})") from exc
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{where}: field {field!r} uses {bad}; allowed fields: {sorted(allowed)}")
    return template


def resolve_in_root(root: Path, relative: str, field: str, where: str | Path) -> Path:
    """`root / relative`, refused unless it stays inside `root` (checked on the path's text, not through links).

    Symbolic links inside a dataset are followed when the file is opened (the Hugging Face cache stores
    every file as a link into its blob store); what is checked is that no template or name climbs out.
    """
    if os.path.isabs(relative) or "\0" in relative:
        raise ValueError(f"{where}: field {field!r} gives {relative!r}, which is not a relative path")
    norm = os.path.normpath(relative)
    if norm == os.pardir or norm.startswith(os.pardir + os.sep) or norm == os.curdir:
        raise ValueError(f"{where}: field {field!r} gives {relative!r}, which leaves the dataset directory")
    return root / norm


def format_path(root: Path, template: str, field: str, where: str | Path, **values: Any) -> Path:
    """Format `template` (field `field` of `where`) with `values` and resolve it inside `root`."""
    for key, value in values.items():
        if key in ("video_key", "feature"):
            check_feature_name(value, str(where))
        elif not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    try:
        relative = template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{where}: field {field!r} = {template!r} cannot be formatted ({exc!r})") from exc
    return resolve_in_root(root, relative, field, where)


def remove_temp_files(root: Path) -> int:
    """Delete the temp files that killed atomic writes left under `root`. Returns how many."""
    n = 0
    for stray in root.rglob(TEMP_GLOB):
        if stray.is_file():
            stray.unlink()
            n += 1
    return n


# ------------------------------------------------------------------------------------------- features


def features_for(ep: Episode, action_space: str, video_key: str, fps: float, pix_fmt: str) -> dict[str, Any]:
    """LeRobot feature descriptions of episode `ep` (video, state, action, indices, extras)."""
    t, h, w, _ = ep.frames.shape
    space = get_action_space(action_space)
    d = ep.actions.shape[1]
    if space.dim != d:
        raise ValueError(f"episode actions have {d} dims but action space {space.name!r} has {space.dim}")
    check_feature_name(video_key, "video_key")
    video_info = {
        "video.fps": fps,
        "video.height": h + h % 2,
        "video.width": w + w % 2,
        "video.channels": 3,
        "video.codec": "h264",
        "video.pix_fmt": pix_fmt,
        "video.is_depth_map": False,
        "has_audio": False,
    }
    scalar = {"shape": [1], "names": None}
    feats: dict[str, Any] = {
        video_key: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"], "info": video_info},
        "observation.state": {
            "dtype": "float32",
            "shape": [int(ep.state.shape[1]) if ep.state.ndim == 2 else 0],
            "names": ep.meta.get("state_names"),
        },
        "action": {"dtype": "float32", "shape": [d], "names": list(space.names) if space.dim == d else None},
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
    }
    for key, arr in sorted(ep.extras.items()):
        per_frame = list(arr.shape[1:])
        image_like = per_frame[:2] == [h, w] and len(per_frame) in (2, 3)
        feats[extra_feature_name(key)] = {
            "dtype": str(arr.dtype),
            "shape": per_frame if image_like else [int(np.prod(per_frame))],
            "names": None,
            "actwm": {"extra_key": key, "array_shape": per_frame, "storage": "npz" if image_like else "parquet"},
        }
    return feats


def fixed_list(arr: np.ndarray) -> pa.Array:
    """`(N, K)` numpy -> arrow FixedSizeList column."""
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])


def column_to_numpy(col: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A list column of `width` numbers per row -> `(rows, width)` numpy."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if width == 0:
        return np.zeros((len(col), 0), dtype=np.float32)
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars/arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------------------- tasks

# lerobot builds its tasks table as `pd.DataFrame({"task_index": ...}, index=pd.Index(tasks, name="task"))`
# and saves it with `DataFrame.to_parquet`, which stores the index as a last column "task" and records it in
# the schema's "pandas" metadata; `pd.read_parquet` then restores "task" as the index, so lerobot finds the
# task string as `tasks.iloc[i].name` and the index as `tasks.loc[task].task_index`. We write the same table
# with pyarrow alone (pandas is not a dependency), with the metadata in the form pandas 2 writes.
_PANDAS_TASKS_METADATA = {
    "index_columns": ["task"],
    "column_indexes": [
        {
            "name": None,
            "field_name": None,
            "pandas_type": "unicode",
            "numpy_type": "object",
            "metadata": {"encoding": "UTF-8"},
        }
    ],
    "columns": [
        {
            "name": "task_index",
            "field_name": "task_index",
            "pandas_type": "int64",
            "numpy_type": "int64",
            "metadata": None,
        },
        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
    ],
    "creator": {"library": "pyarrow", "version": pa.__version__},
    "pandas_version": "2.2.3",
}


def tasks_table(tasks: list[str]) -> pa.Table:
    """The `meta/tasks.parquet` table of `tasks` (task i has task_index i), as lerobot writes it."""
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())],
        metadata={b"pandas": json.dumps(_PANDAS_TASKS_METADATA).encode()},
    )
    return pa.table({"task_index": list(range(len(tasks))), "task": list(tasks)}, schema=schema)


def read_tasks(path: Path) -> dict[int, str]:
    """task_index -> task of a tasks.parquet: lerobot's (task string as the pandas index, named or not) or
    actwm's before 2026-11 (plain `task_index`, `task` columns)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: cannot read parquet ({exc})") from exc
    meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
    index_cols = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    candidates = ["task", *index_cols, "__index_level_0__"]
    task_col = next((c for c in candidates if c in table.column_names and c != "task_index"), None)
    if "task_index" not in table.column_names or task_col is None:
        raise ValueError(f"{path}: needs a 'task_index' column and the task strings (column or index 'task')")
    d = table.to_pydict()
    return {int(i): str(t) for i, t in zip(d["task_index"], d[task_col])}
