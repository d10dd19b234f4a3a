from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from PIL import Image

from actwm.data.gnm import nav_actions
from actwm.data.recon import ReconDataset


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_recon(path, t=5, truncate_at=None, yaw_len=None):
    frames = np.stack([np.full((24, 32, 3), 30 + 40 * i, np.uint8) for i in range(t)])
    pos = np.column_stack([np.arange(t) * 0.5, np.zeros(t), np.zeros(t)])
    yaw = np.array([0.0, np.pi / 2, 3.1, -3.1, -3.1][:t])
    with h5py.File(path, "w") as f:
        f["jackal/position"] = pos
        f["jackal/yaw"] = yaw[: yaw_len or t]
        dt = h5py.vlen_dtype(np.dtype("uint8"))
        ds = f.create_dataset("images/rgb_left", (t,), dtype=dt)
        for i, fr in enumerate(frames):
            b = _jpeg(fr)
            if i == truncate_at:
                b = b[: len(b) // 3]
            ds[i] = np.frombuffer(b, np.uint8)
    return frames, pos, yaw


def test_recon_reader(tmp_path):
    frames, pos, yaw = make_recon(tmp_path / "a.hdf5")
    make_recon(tmp_path / "b.hdf5")
    ds = ReconDataset(tmp_path)
    assert len(ds) == 2
    ep = ds.episode(0)
    assert ep.frames.shape == (5, 24, 32, 3) and np.abs(ep.frames.astype(float) - frames).mean() < 2
    # hand-computed: 0.5 m along world x; facing +x -> forward 0.5, then facing +y -> 0.5 m to the right
    np.testing.assert_allclose(ep.actions[0], [0.5, 0.0, np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(ep.actions[1], [0.0, -0.5, 3.1 - np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(ep.actions[2, 2], 2 * np.pi - 6.2, atol=1e-6)  # 3.1 -> -3.1 wraps
    np.testing.assert_array_equal(ep.actions[-1], 0)
    np.testing.assert_allclose(ep.actions, nav_actions(pos[:, :2], yaw))
    assert ep.meta["metric_spacing"] == 0.25 and ep.action_space == "nav3"


def test_recon_bad_inputs(tmp_path):
    make_recon(tmp_path / "trunc.hdf5", truncate_at=2)
    with pytest.raises(ValueError, match=r"trunc.hdf5:images/rgb_left\[2\]: cannot decode JPEG"):
        ReconDataset(tmp_path / "trunc.hdf5").episode(0)
    make_recon(tmp_path / "short.hdf5", yaw_len=3)
    with pytest.raises(ValueError, match=r"short.hdf5: mismatched lengths"):
        ReconDataset(tmp_path / "short.hdf5").episode(0)


def test_recon_files_stay_inside_the_folder(tmp_path):
    root, outside = tmp_path / "recon", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_recon(root / "a.hdf5")
    make_recon(outside / "secret.hdf5")
    assert len(ReconDataset(root)) == 1
    (root / "b.hdf5").symlink_to(outside / "secret.hdf5")  # a file that leads out of the dataset
    with pytest.raises(ValueError, match=r"b.hdf5: path 'b.hdf5' leads outside"):
        ReconDataset(root)
