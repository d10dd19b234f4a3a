from __future__ import annotations

import pickle

import numpy as np
import pytest

from actwm.data.convert import convert
from actwm.data.gnm import GNMDataset, nav_actions, to_local_coords, wrap_angle
from actwm.data.lerobot import LeRobotDataset


def test_nav_actions_hand_computed():
    # robot at origin facing +y (yaw pi/2) moves 1 m along +y: 1 m forward in its own frame
    pos = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    yaw = np.array([np.pi / 2, 0.0, 3.1, -3.1])
    a = nav_actions(pos, yaw)
    np.testing.assert_allclose(a[0], [1.0, 0.0, -np.pi / 2], atol=1e-6)
    # facing +x (yaw 0), moving +x by 1: forward 1, and turning to 3.1
    np.testing.assert_allclose(a[1], [1.0, 0.0, 3.1], atol=1e-6)
    # yaw 3.1 -> -3.1 wraps to +0.0832 (not -6.2)
    np.testing.assert_allclose(a[2], [0.0, 0.0, 2 * np.pi - 6.2], atol=1e-6)
    assert a[2, 2] == pytest.approx(0.0831853, abs=1e-6)
    np.testing.assert_array_equal(a[3], 0.0)  # last row zeros
    # a point to the robot's left (robot facing +x, point at +y) has positive local y
    np.testing.assert_allclose(to_local_coords(np.array([[0.0, 2.0]]), np.zeros(2), 0.0), [[0.0, 2.0]])
    # facing +y, a world point at -x is on the robot's left
    np.testing.assert_allclose(
        to_local_coords(np.array([[-1.0, 0.0]]), np.zeros(2), np.pi / 2), [[0.0, 1.0]], atol=1e-12
    )


def test_wrap_angle_range():
    w = wrap_angle(np.array([np.pi, -np.pi, 3 * np.pi, 0.1, -7.0]))
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(w[:2], [np.pi, np.pi])


def test_gnm_reader_frames_actions_splits(tmp_path, make_gnm):
    src, truth = make_gnm(tmp_path)
    ds = GNMDataset(src)
    assert ds.dataset == "recon" and ds.metric_spacing == 0.25 and len(ds) == 4
    for i, name in enumerate(ds.names):
        ep = ds.episode(i)
        frames, pos, yaw = truth[name]
        assert np.abs(ep.frames.astype(float) - frames).mean() < 3.0  # JPEG
        np.testing.assert_allclose(ep.actions, nav_actions(pos, yaw))
        d = pos[1] - pos[0]  # hand-computed first row
        c, s = np.cos(yaw[0]), np.sin(yaw[0])
        np.testing.assert_allclose(ep.actions[0, :2], [c * d[0] + s * d[1], -s * d[0] + c * d[1]], rtol=1e-5)
        assert ep.meta["split"] == ("test" if name == "traj_03" else "train")
        assert ep.meta["metric_spacing"] == 0.25 and ep.fps == 4.0
        np.testing.assert_allclose(ep.extras["pose"][:, 2], yaw, rtol=1e-6)


def test_gnm_to_lerobot_identical_actions(tmp_path, make_gnm):
    src, _ = make_gnm(tmp_path)
    out = convert("gnm", src, tmp_path / "lr", progress=False, frames_per_file=10)
    lr, gnm = LeRobotDataset(out), GNMDataset(src)
    assert lr.splits() == ["train", "train", "train", "test"]
    assert lr.info["actwm"]["metric_spacing"] == 0.25 and lr.fps == 4.0 and lr.action_space == "nav3"
    for i in range(len(gnm)):
        a, b = gnm.episode(i), lr.episode(i)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.extras["pose"], b.extras["pose"])
        assert np.abs(a.frames.astype(float) - b.frames).mean() < 3.0


def test_gnm_bad_inputs(tmp_path, make_gnm):
    src, _ = make_gnm(tmp_path, n=3, test=(2,))
    pkl = src / "traj_01" / "traj_data.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump({"position": np.zeros((6, 2))}, fh)
    with pytest.raises(ValueError, match=r"traj_01/traj_data.pkl: field 'yaw' missing"):
        GNMDataset(src).episode(1)
    jpg = src / "traj_00" / "3.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(ValueError, match=r"traj_00/3.jpg"):
        GNMDataset(src).episode(0)
    (src / "traj_02" / "5.jpg").unlink()
    with pytest.raises(ValueError, match=r"traj_02: 5 images but traj_data.pkl has 6 positions"):
        GNMDataset(src).episode(2)
    with pytest.raises(ValueError, match="unknown source format 'rosbag'"):
        convert("rosbag", src, tmp_path / "x", progress=False)
