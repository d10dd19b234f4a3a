"""GNM / ViNT / NWM navigation folders and NWM's action convention.

Layout::

    <dataset>/<traj>/0.jpg .. (T-1).jpg, traj_data.pkl     pickle: {"position": (T, 2) metres, "yaw": (T,) rad}
    data_splits/<dataset>/{train,test}/traj_names.txt       one trajectory name per line

Stored actions use NWM's robot frame (`to_local_coords(positions, curr_pos, curr_yaw) =
(positions - curr_pos) @ R(curr_yaw)` with `R(y) = [[cos y, -sin y], [sin y, cos y]]`, i.e. the world
displacement rotated by -yaw into the robot frame: x forward, y left) but are per-step, not NWM's: row t is
the motion from frame t to t+1 in the robot frame of frame t, `(p[t+1] - p[t]) @ R(yaw[t])` in metres and
`wrap_angle(yaw[t+1] - yaw[t])` in [-pi, pi) (`actwm.geometry`, NWM's range), float32 kept inside that range;
the last row is zeros. Composing rows t..t+k-1 gives NWM's `_compute_actions` row k of a clip starting at t
(the pose of frame t+k in frame t's robot frame). NWM divides xy by the dataset's metric waypoint spacing
(`METRIC_SPACING`) before its min-max normalisation; we keep metres in storage, put the spacing in the
episode meta, and `actwm.data.clips` (normalise="nwm") reproduces NWM's normalised cumulative actions and
its deltas exactly (see `actwm.actions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from actwm.data.safety import inside_root, load_data_pickle
from actwm.episode import Episode
from actwm.geometry import wrap_angle_float32
from actwm.video import read_image

METRIC_SPACING = {"recon": 0.25, "scand": 0.38, "tartan_drive": 0.72, "sacson": 0.255, "go_stanford": 0.12}
GNM_FPS = 4.0  # GNM/ViNT processing resamples every dataset to 4 Hz


def yaw_rotmat(yaw: float) -> np.ndarray:
    """2-D rotation by `yaw`: `[[cos, -sin], [sin, cos]]` (NWM's `yaw_rotmat`, xy block)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def to_local_coords(positions: np.ndarray, curr_pos: np.ndarray, curr_yaw: float) -> np.ndarray:
    """World positions `(N, 2)` -> robot frame at (`curr_pos`, `curr_yaw`): `(p - p0) @ R(yaw0)`."""
    return (np.asarray(positions, dtype=np.float64) - curr_pos) @ yaw_rotmat(curr_yaw)


def nav_actions(position: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Per-step actions `(T, 3)` float32 (dx, dy [m], dyaw [rad]) from `position (T, 2)`, `yaw (T,)`.

    Row t takes frame t to t+1 in the robot frame of frame t (dyaw wrapped to [-pi, pi) and kept there in
    float32); the last row is zeros.
    """
    p = np.asarray(position, dtype=np.float64)[:, :2]
    y = np.asarray(yaw, dtype=np.float64).reshape(-1)
    t = len(p)
    out = np.zeros((t, 3), dtype=np.float64)
    if t > 1:
        d = p[1:] - p[:-1]
        c, s = np.cos(y[:-1]), np.sin(y[:-1])
        out[:-1, 0] = d[:, 0] * c + d[:, 1] * s  # row vector @ R(yaw)
        out[:-1, 1] = -d[:, 0] * s + d[:, 1] * c
    out = out.astype(np.float32)
    if t > 1:
        out[:-1, 2] = wrap_angle_float32(y[1:] - y[:-1])
    return out


def nav_episode(
    frames: list[np.ndarray],
    xy: np.ndarray,
    yaw: np.ndarray,
    fps: float,
    meta: dict[str, Any],
    metric_spacing: float | None = None,
    where: str | None = None,
) -> Episode:
    """A `nav3` Episode from `(T, H, W, 3)` frames, `(T, 2)` positions and `(T,)` yaw: NWM actions, pose
    `(x, y, yaw)` as state and `pose` extra (the GNM and RECON readers share this). `where` names the images
    in errors (default: `meta["source"]`)."""
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"{where or meta['source']}: images differ in size")
    pose = np.concatenate([xy, yaw[:, None]], 1).astype(np.float32)
    meta = dict(meta, state_names=["x", "y", "yaw"])
    if metric_spacing is not None:
        meta["metric_spacing"] = float(metric_spacing)
    return Episode(
        frames=np.stack(frames),
        actions=nav_actions(xy, yaw),
        state=pose.copy(),
        fps=fps,
        action_space="nav3",
        extras={"pose": pose},
        meta=meta,
    )


def _frame_files(folder: Path, root: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stem.isdigit()]
    for f in files:  # a symlinked image must not lead outside the dataset
        inside_root(root, f.relative_to(root), str(f))
    return sorted(files, key=lambda p: int(p.stem))


def load_traj_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `traj_data.pkl` -> (position (T, 2) float64, yaw (T,) float64), validating fields.

    The pickle is read with `actwm.data.safety.load_data_pickle` (numpy arrays and plain containers only)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing traj_data.pkl")
    data = load_data_pickle(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict with 'position' and 'yaw', got {type(data).__name__}")
    for key in ("position", "yaw"):
        if key not in data:
            raise ValueError(f"{path}: field {key!r} missing (found: {', '.join(map(str, data))})")
    pos = np.asarray(data["position"], dtype=np.float64)
    yaw = np.asarray(data["yaw"], dtype=np.float64).reshape(-1)
    if pos.ndim != 2 or pos.shape[1] < 2:
        raise ValueError(f"{path}: field 'position' must be (T, 2), got {pos.shape}")
    if len(yaw) != len(pos):
        raise ValueError(f"{path}: 'position' has {len(pos)} rows but 'yaw' has {len(yaw)}")
    if not (np.isfinite(pos).all() and np.isfinite(yaw).all()):
        raise ValueError(f"{path}: 'position' or 'yaw' holds NaN/inf")
    return pos[:, :2], yaw


def read_split_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class GNMDataset:
    """Trajectories of one GNM/NWM dataset folder as `Episode`s (action space `nav3`).

    Args:
        root: the `<dataset>` folder holding one sub-folder per trajectory.
        dataset: dataset name (for the metric spacing and `data_splits/<dataset>`); default: folder name.
        splits_dir: the `data_splits` folder; default: the first `data_splits/<dataset>` found in
            `root`, `root/..` or `root/../..`.
        fps: frame rate of the folders (GNM processing writes 4 Hz).
        metric_spacing: metres per waypoint; default from `METRIC_SPACING`, else None.
    """

    action_space = "nav3"

    def __init__(
        self,
        root: str | Path,
        *,
        dataset: str | None = None,
        splits_dir: str | Path | None = None,
        fps: float = GNM_FPS,
        metric_spacing: float | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: GNM dataset folder not found")
        self.dataset = dataset or self.root.name
        self.fps = float(fps)
        self.metric_spacing = metric_spacing if metric_spacing is not None else METRIC_SPACING.get(self.dataset)
        self.splits_dir = self._find_splits(splits_dir)
        self.split_of = self._read_splits(self.splits_dir) if self.splits_dir is not None else {}
        if self.splits_dir is not None:
            self.names = sorted(self.split_of)
        else:  # every trajectory folder (hidden folders and data_splits aside)
            self.names = sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and p.name != "data_splits" and p.name[0] != "."
            )
        if not self.names:
            raise ValueError(f"{self.root}: no trajectory folders with traj_data.pkl")
        where = self.splits_dir or self.root
        for name in self.names:  # each must stay inside the root and hold its pickle: no silent partial conversion
            folder = inside_root(self.root, name, f"{where}: trajectory {name!r}")
            if not folder.is_dir():
                raise FileNotFoundError(f"{where}: lists trajectory {name!r}, missing under {self.root}")
            if not (folder / "traj_data.pkl").is_file():
                raise FileNotFoundError(f"{folder / 'traj_data.pkl'}: missing (trajectory {name!r})")

    def _read_splits(self, sdir: Path) -> dict[str, str]:
        """Trajectory name -> split label from `<sdir>/<split>/traj_names.txt`."""
        split_of: dict[str, str] = {}
        for split in sorted(p.name for p in sdir.iterdir() if (p / "traj_names.txt").is_file()):
            names_file = sdir / split / "traj_names.txt"
            for name in read_split_file(names_file):
                inside_root(self.root, name, f"{names_file}: trajectory {name!r}")
                if name in split_of and split_of[name] != split:
                    raise ValueError(f"{sdir}: trajectory {name!r} is listed in both {split_of[name]!r} and {split!r}")
                split_of[name] = split
        return split_of

    def _find_splits(self, splits_dir: str | Path | None) -> Path | None:
        if splits_dir is not None:
            p = Path(splits_dir)
            cand = p / self.dataset if (p / self.dataset).is_dir() else p
            if not cand.is_dir():
                raise FileNotFoundError(f"{p}: data_splits folder not found")
            return cand
        for base in (
            self.root / "data_splits",
            self.root.parent / "data_splits",
            self.root.parent.parent / "data_splits",
        ):
            if (base / self.dataset).is_dir():
                return base / self.dataset
        return None

    def __len__(self) -> int:
        return len(self.names)

    def episode(self, i: int) -> Episode:
        name = self.names[i]
        folder = inside_root(self.root, name, f"{self.splits_dir or self.root}: trajectory {name!r}")
        pos, yaw = load_traj_data(folder / "traj_data.pkl")
        files = _frame_files(folder, self.root)
        if len(files) != len(pos):
            raise ValueError(f"{folder}: {len(files)} images but traj_data.pkl has {len(pos)} positions")
        if [int(p.stem) for p in files] != list(range(len(files))):
            raise ValueError(f"{folder}: images are not numbered 0..{len(files) - 1}")
        frames = [read_image(p) for p in files]
        meta: dict[str, Any] = {"source": str(folder), "trajectory": name, "dataset": self.dataset, "scene_id": name}
        if name in self.split_of:
            meta["split"] = self.split_of[name]
        return nav_episode(frames, pos, yaw, self.fps, meta, self.metric_spacing)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)
