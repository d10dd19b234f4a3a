"""Feature statistics of a LeRobot store: per-episode moments, merged into `meta/stats.json`.

Per-episode moments are stored in the episodes parquet as `stats/<feature>/<count|mean|std|min|max>` (as
LeRobot v3.0 does) and merged at `finalize()`, so a resumed write gives the same statistics.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from actwm.episode import Episode


def moments(x: np.ndarray, axis: tuple[int, ...]) -> dict[str, Any]:
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


def stats_to_json(s: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in s.items()}


def episode_stats(ep: Episode, features: dict[str, Any], video_key: str, fps: float) -> dict[str, dict[str, Any]]:
    """Moments of one episode's video (every len//16-th frame, in [0, 1]), action, state, time and extras."""
    out = {video_key: moments(ep.frames[:: max(1, len(ep) // 16)].astype(np.float32) / 255.0, (0, 1, 2))}
    out["action"] = moments(ep.actions, (0,))
    if ep.state.ndim == 2 and ep.state.shape[1]:
        out["observation.state"] = moments(ep.state, (0,))
    out["timestamp"] = moments((np.arange(len(ep)) / fps)[:, None], (0,))
    for name, feat in features.items():
        a = feat.get("actwm")
        if not a:
            continue
        arr = ep.extras[a["extra_key"]]
        out[name] = moments(arr.reshape(-1, 1) if a["storage"] == "npz" else arr.reshape(len(ep), -1), (0,))
    return out


def stats_columns(per_episode: list[dict[str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """Episodes-parquet columns `stats/<feature>/<key>` (one flat float list per episode)."""
    cols: dict[str, list[Any]] = {}
    for stats in per_episode:
        for feat, s in stats.items():
            for k, v in s.items():
                cols.setdefault(f"stats/{feat}/{k}", []).append(np.asarray(v, dtype=np.float64).reshape(-1).tolist())
    return cols


def aggregate_stats(episode_tables: Iterable[pa.Table], video_key: str) -> dict[str, Any]:
    """Merge the per-episode moments stored in the episodes parquet files into stats.json's content."""
    parts: dict[str, list[dict[str, Any]]] = {}
    for table in episode_tables:
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
        js = stats_to_json(merge_stats(plist))
        if feat == video_key:  # LeRobot keeps image stats as (3, 1, 1)
            for k in ("mean", "std", "min", "max"):
                js[k] = [[[v]] for v in js[k]]
        out[feat] = js
    return out
