"""The tables a LeRobot v3.0 writer emits for one file set: the data parquet, the episodes parquet, npz extras.

Pure functions of the buffered episodes (no I/O), so what a file holds is readable in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from actwm.data.lerobot.format import META_COLUMNS, fixed_list, json_default
from actwm.data.lerobot.stats import stats_columns


@dataclass
class Buffered:
    """An added episode waiting for its data file to be written (its frames are already encoded)."""

    actions: np.ndarray
    state: np.ndarray
    extras: dict[str, np.ndarray]
    meta: dict[str, Any]
    stats: dict[str, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.actions)


def frame_columns(lengths: list[int], fps: float, ep0: int, idx0: int, task_ids: list[int]) -> dict[str, pa.Array]:
    """LeRobot's per-frame index columns of consecutive episodes of `lengths` starting at episode `ep0`, frame
    `idx0`: `frame_index` 0..T-1 within each episode, `timestamp = frame_index / fps`, `episode_index`, the
    global `index` and `task_index`."""
    frame_index = np.concatenate([np.arange(t) for t in lengths])
    n = len(frame_index)
    return {
        "timestamp": pa.array((frame_index / fps).astype(np.float32)),
        "frame_index": pa.array(frame_index.astype(np.int64)),
        "episode_index": pa.array(np.repeat(np.arange(ep0, ep0 + len(lengths)), lengths).astype(np.int64)),
        "index": pa.array(np.arange(idx0, idx0 + n, dtype=np.int64)),
        "task_index": pa.array(np.repeat(task_ids, lengths).astype(np.int64)),
    }


def data_tables(
    eps: list[Buffered], features: dict[str, Any], fps: float, ep0: int, idx0: int, task_ids: list[int]
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The data parquet table of `eps` and their image-shaped extras `{feature: (N, H, W[, C])}` for npz."""
    lengths = [len(e) for e in eps]
    n = sum(lengths)
    cols: dict[str, pa.Array] = {}
    if features["observation.state"]["shape"][0]:
        cols["observation.state"] = fixed_list(np.concatenate([e.state for e in eps]).astype(np.float32))
    cols["action"] = fixed_list(np.concatenate([e.actions for e in eps]).astype(np.float32))
    cols.update(frame_columns(lengths, fps, ep0, idx0, task_ids))
    npz: dict[str, np.ndarray] = {}
    for name, feat in features.items():
        a = feat.get("actwm")
        if not a:
            continue
        arr = np.concatenate([e.extras[a["extra_key"]] for e in eps])
        if a["storage"] == "npz":
            npz[name] = arr
        else:
            cols[name] = fixed_list(arr.reshape(n, -1))
    return pa.table(cols), npz


def episodes_table(
    eps: list[Buffered], tasks: list[str], task_ids: list[int], *, video_key: str, fps: float, ep0: int, idx0: int,
    fmt: dict[str, int],
) -> pa.Table:  # fmt: skip
    """The episodes parquet table of `eps` (one row each: index ranges, file indices, video times, meta, stats)."""
    vk = video_key
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
            "dataset_to_index", f"videos/{vk}/chunk_index", f"videos/{vk}/file_index", f"videos/{vk}/from_timestamp",
            f"videos/{vk}/to_timestamp", "meta/episodes/chunk_index", "meta/episodes/file_index", *META_COLUMNS, "meta",
        )
    }  # fmt: skip
    start, offset = idx0, 0
    for i, (ep, tid) in enumerate(zip(eps, task_ids)):
        t = len(ep)
        rows["episode_index"].append(ep0 + i)
        rows["tasks"].append([tasks[tid]])
        rows["length"].append(t)
        for prefix in ("data", f"videos/{vk}", "meta/episodes"):
            rows[f"{prefix}/chunk_index"].append(fmt["chunk_index"])
            rows[f"{prefix}/file_index"].append(fmt["file_index"])
        rows["dataset_from_index"].append(start)
        rows["dataset_to_index"].append(start + t)
        rows[f"videos/{vk}/from_timestamp"].append(offset / fps)
        rows[f"videos/{vk}/to_timestamp"].append((offset + t) / fps)
        for col in META_COLUMNS:
            v = ep.meta.get(col)
            rows[col].append(None if v is None else str(v))
        rows["meta"].append(json.dumps(ep.meta, sort_keys=True, default=json_default))
        start += t
        offset += t
    return pa.table({**rows, **stats_columns([e.stats for e in eps])})
