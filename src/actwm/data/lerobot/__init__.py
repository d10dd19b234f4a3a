"""LeRobotDataset v3.0 writer and reader (v3.0 and v2.1), with pyarrow + PyAV only (no `lerobot`).

Modules (as lerobot separates dataset metadata, reader and writer):
- `format`: path templates, feature descriptions, the tasks table, and path checks for untrusted datasets;
- `stats`: per-episode moments and their merge into `meta/stats.json`;
- `tables`: the data / episodes parquet tables of one file set;
- `writer`: `LeRobotWriter` (atomic, resumable);
- `reader`: `LeRobotDataset` (v3.0, v2.1, v2.0).

Layout written (every path formatted from the templates in `meta/info.json`)::

    meta/info.json                                   codebase_version "v3.0", fps, features, templates
    meta/stats.json                                  mean/std/min/max/count per numeric feature
    meta/tasks.parquet                               task_index, with the task string as the pandas index
    meta/episodes/chunk-000/file-000.parquet         one row per episode (index ranges, video times, extras)
    data/chunk-000/file-000.parquet                  one row per frame (state, action, time, indices, cameras)
    videos/<video_key>/chunk-000/file-000.mp4        H.264, many episodes per file, concatenated in time
    extras/<feature>/chunk-000/file-000.npz          image-shaped extras (depth float32, segmentation int32)

Extras of an `Episode` are stored as additional features: per-frame image-shaped arrays `(T, H, W)`
(depth, segmentation) go to compressed npz files aligned with the data files (described in
`info["actwm"]["extra_features"]` with `storage: "npz"`, template `extras_path`; they stay out of
`features` so that LeRobot's own loader, which builds the parquet schema from `features`, still works); small
per-frame arrays (camera intrinsics `(3, 3)` -> `observation.camera.intrinsics` (9,), extrinsics `(4, 4)` ->
`observation.camera.extrinsics` (16,), navigation pose -> `observation.pose` (3,)) go to flat fixed-size list
columns of the data parquet, with the original per-frame shape under the feature's `actwm.array_shape`.
"""

from __future__ import annotations

from actwm.data.lerobot.format import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_VIDEO_KEY,
    EPISODES_PATH,
    EXTRA_FEATURES,
    EXTRAS_PATH,
    PROGRESS_FILE,
    VIDEO_PATH,
    extra_feature_name,
)
from actwm.data.lerobot.reader import EpisodeIndexError, LeRobotDataset
from actwm.data.lerobot.stats import merge_stats
from actwm.data.lerobot.writer import (
    LeRobotWriter,
    check_output_dir,
    check_writer_settings,
    committed_episodes,
    is_complete,
)

__all__ = [
    "CODEBASE_VERSION",
    "DATA_PATH",
    "DEFAULT_VIDEO_KEY",
    "EPISODES_PATH",
    "EXTRAS_PATH",
    "EXTRA_FEATURES",
    "PROGRESS_FILE",
    "VIDEO_PATH",
    "EpisodeIndexError",
    "LeRobotDataset",
    "LeRobotWriter",
    "check_output_dir",
    "check_writer_settings",
    "committed_episodes",
    "extra_feature_name",
    "is_complete",
    "merge_stats",
]
