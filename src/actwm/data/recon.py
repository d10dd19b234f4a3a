"""RECON HDF5 trajectories (one `.hdf5` file per trajectory).

Fields read: `jackal/position` (T, 3) metres (x, y used), `jackal/yaw` (T,) radians,
`images/rgb_left` (T,) JPEG bytes. Actions follow NWM (see `actwm.data.gnm.nav_actions`). Files are found by
listing the folder; none may lead outside it (a symlink out of the folder is an error).
The frame rate is not stored in the files; RECON's native rate is taken as 3 Hz (override with `fps`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np

from actwm.data.gnm import METRIC_SPACING, nav_episode
from actwm.data.safety import inside_root
from actwm.episode import Episode

RECON_FPS = 3.0


def decode_jpeg(data: bytes, what: str) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8; a truncated/corrupt image raises ValueError naming `what`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError(f"{what}: cannot decode JPEG ({exc})") from exc


def _as_bytes(item: object) -> bytes:
    if isinstance(item, (bytes, np.bytes_)):
        return bytes(item)
    return np.asarray(item, dtype=np.uint8).tobytes()


class ReconDataset:
    """RECON `.hdf5` files (a file or a folder searched recursively) as `nav3` `Episode`s."""

    action_space = "nav3"

    def __init__(
        self, root: str | Path, *, fps: float = RECON_FPS, metric_spacing: float | None = METRIC_SPACING["recon"]
    ) -> None:
        self.root = Path(root)
        if self.root.is_file():
            self.files = [self.root]
        elif self.root.is_dir():
            self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in (".hdf5", ".h5"))
            for f in self.files:  # a symlinked file must not lead outside the folder
                inside_root(self.root, f.relative_to(self.root), str(f))
        else:
            raise FileNotFoundError(f"{self.root}: RECON file or folder not found")
        if not self.files:
            raise ValueError(f"{self.root}: no .hdf5/.h5 files found")
        self.fps = float(fps)
        self.metric_spacing = metric_spacing

    def __len__(self) -> int:
        return len(self.files)

    def episode(self, i: int) -> Episode:
        import h5py

        path = self.files[i]
        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path}: cannot open HDF5 ({exc})") from exc
        with h5:
            for key in ("jackal/position", "jackal/yaw", "images/rgb_left"):
                if key not in h5:
                    raise ValueError(f"{path}: dataset {key!r} missing")
            pos = np.asarray(h5["jackal/position"][()], dtype=np.float64)
            yaw = np.asarray(h5["jackal/yaw"][()], dtype=np.float64).reshape(-1)
            images = h5["images/rgb_left"]
            if pos.ndim != 2 or pos.shape[1] < 2:
                raise ValueError(f"{path}: 'jackal/position' must be (T, 3), got {pos.shape}")
            if not (len(pos) == len(yaw) == len(images)):
                raise ValueError(
                    f"{path}: mismatched lengths: jackal/position {len(pos)}, jackal/yaw {len(yaw)}, "
                    f"images/rgb_left {len(images)}"
                )
            frames = [decode_jpeg(_as_bytes(images[t]), f"{path}:images/rgb_left[{t}]") for t in range(len(images))]
        meta = {"source": str(path), "trajectory": path.stem, "dataset": "recon", "scene_id": path.stem}
        return nav_episode(
            frames, pos[:, :2], yaw, self.fps, meta, self.metric_spacing, where=f"{path}: images/rgb_left"
        )

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)
