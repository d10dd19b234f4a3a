from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from actwm.data.clips import ClipDataset
from actwm.data.convert import convert
from actwm.data.gnm import GNMDataset, nav_actions, to_local_coords
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


def test_exact_pi_step_wraps_to_minus_pi_as_nwm():
    # a heading change of exactly pi: NWM (and actwm.geometry) wrap to [-pi, pi), i.e. -pi; stored as float32
    # it must stay inside [-pi, pi) (float32(-pi) < -pi would read back as +pi)
    a = nav_actions(np.zeros((2, 2)), np.array([-np.pi / 2, np.pi / 2]))
    assert a.dtype == np.float32 and -np.pi <= float(a[0, 2]) < -np.pi + 1e-6


# ------------------------------------------------------------------ independent reference of NWM's formulas
# From facebookresearch/nwm datasets.py (`BaseDataset._compute_actions`, `EvalDataset.__getitem__`) and misc.py
# (`normalize_data`, `get_delta_np`, `angle_difference`, `to_local_coords`), re-derived here from their maths.
NWM_MIN, NWM_MAX = np.array([-2.5, -4.0]), np.array([5.0, 4.0])


def nwm_angle_difference(a: float, b: np.ndarray) -> np.ndarray:
    d = b - a  # wrapped with a floor, to [-pi, pi)
    return d - 2 * np.pi * np.floor((d + np.pi) / (2 * np.pi))


def nwm_compute_actions(pos: np.ndarray, yaw: np.ndarray, t: int, horizon: int, spacing: float) -> np.ndarray:
    """`_compute_actions(traj, curr_time=t, ...)` with normalize=True: `(horizon, 3)` poses of frames
    t+1..t+horizon in frame t's robot frame, xy in metric-spacing units, yaw wrapped relative to yaw[t]."""
    p, y = pos[t : t + horizon + 1], yaw[t : t + horizon + 1]
    dx, dy = (p - p[0]).T
    c, s = np.cos(y[0]), np.sin(y[0])
    local = np.column_stack([c * dx + s * dy, -s * dx + c * dy])  # rotate the displacement by -yaw[t]
    out = np.column_stack([local / spacing, nwm_angle_difference(y[0], y)])
    return out[1:]


def nwm_normalize(xy: np.ndarray) -> np.ndarray:
    return (xy - NWM_MIN) / (NWM_MAX - NWM_MIN) * 2 - 1


def nwm_eval_delta(pos: np.ndarray, yaw: np.ndarray, t: int, horizon: int, spacing: float) -> np.ndarray:
    """`EvalDataset`: normalise the cumulative xy, then difference with a zero row prepended."""
    a = nwm_compute_actions(pos, yaw, t, horizon, spacing)
    a[:, :2] = nwm_normalize(a[:, :2])
    return np.diff(a, axis=0, prepend=np.zeros((1, 3)))


def _wrap_crossing_gnm(root, t: int = 16):
    """A GNM folder (recon, spacing 0.25) whose heading crosses +-pi several times, with an exact-pi step."""
    turns = [2.0, 2.9, -2.5, -1.6, -0.7, 0.2, -3.0, 3.05, 2.9]  # 7..11 turn more than pi from frame 7
    yaw = np.array([2.6, 2.85, 3.1, -2.93, -2.7, -np.pi / 2, np.pi / 2, *turns])[:t]
    rng = np.random.default_rng(5)
    steps = np.column_stack([np.cos(yaw), np.sin(yaw)]) * 0.3 + rng.normal(scale=0.05, size=(t, 2))
    pos = np.cumsum(steps, 0) + [12.0, -7.0]
    folder = root / "recon" / "traj_00"
    folder.mkdir(parents=True)
    for i in range(t):
        Image.fromarray(np.full((16, 16, 3), 10 * i, np.uint8)).save(folder / f"{i}.jpg")
    with open(folder / "traj_data.pkl", "wb") as fh:
        pickle.dump({"position": pos, "yaw": yaw}, fh)
    return root / "recon", pos, yaw


def test_gnm_matches_nwm_compute_actions_and_deltas(tmp_path):
    src, pos, yaw = _wrap_crossing_gnm(tmp_path)
    store = convert("gnm", src, tmp_path / "lr", progress=False)
    n, worst = 5, {"cumulative": 0.0, "none": 0.0, "delta": 0.0}
    cum = ClipDataset(store, context=1, horizon=n - 1, action_mode="cumulative", normalise="nwm", split=None)
    raw = ClipDataset(store, context=1, horizon=n - 1, action_mode="cumulative", normalise="none", split=None)
    delta = ClipDataset(store, context=1, horizon=n - 1, action_mode="delta", normalise="nwm", split=None)
    starts = [s for _, s in cum.index]
    assert starts == list(range(len(yaw) - n + 1))
    for k, s in enumerate(starts):
        ref = nwm_compute_actions(pos, yaw, s, n - 1, 0.25)
        got = cum[k]["actions"].numpy().astype(np.float64)
        ref_norm = np.column_stack([nwm_normalize(ref[:, :2]), ref[:, 2]])
        worst["cumulative"] = max(worst["cumulative"], np.abs(got[1:] - ref_norm).max())
        np.testing.assert_allclose(got[0], [-1 / 3, 0.0, 0.0], atol=1e-7)  # row 0: normalize_data(0)
        metres = raw[k]["actions"].numpy().astype(np.float64)
        worst["none"] = max(worst["none"], np.abs(metres[1:] - ref * [0.25, 0.25, 1]).max())
        if s + n < len(yaw):  # NWM needs frame s + n for the last delta row (ours looks past the clip)
            got_d = delta[k]["actions"].numpy().astype(np.float64)
            worst["delta"] = max(worst["delta"], np.abs(got_d - nwm_eval_delta(pos, yaw, s, n, 0.25)).max())
    assert max(worst.values()) <= 1e-6, worst
    # the fixture exercises what differs from per-step deltas: 2 pi jumps of the wrapped cumulative yaw
    jumps = [np.abs(nwm_eval_delta(pos, yaw, s, n, 0.25)[:, 2]).max() for s in range(len(yaw) - n)]
    assert max(jumps) > 4.0


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


# ------------------------------------------------------------------------------------- untrusted input


class _RunsACommand:
    """Unpickling this calls `fn(*args)` (what a crafted traj_data.pkl would do)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("call", ["os.system", "subprocess.call"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, make_gnm, call):
    import os
    import subprocess

    src, _ = make_gnm(tmp_path, n=2, test=())
    marker = tmp_path / "ran"
    fn, args = {
        "os.system": (os.system, (f"touch {marker}",)),
        "subprocess.call": (subprocess.call, (["touch", str(marker)],)),
    }[call]
    pkl = src / "traj_01" / "traj_data.pkl"
    pkl.write_bytes(pickle.dumps({"position": np.zeros((6, 2)), "yaw": _RunsACommand(fn, args)}))
    with pytest.raises(ValueError, match=r"traj_01/traj_data.pkl: refused to unpickle .*(system|call)"):
        GNMDataset(src).episode(1)
    with pytest.raises(ValueError, match="refused to unpickle"):
        convert("gnm", src, tmp_path / "out", progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out" / "meta" / "info.json").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_nwm_pickles_still_load(tmp_path, make_gnm, protocol):
    src, truth = make_gnm(tmp_path, n=1, test=())
    frames, pos, yaw = truth["traj_00"]
    data = {"position": pos, "yaw": yaw[:, None], "extra": [np.float64(0.5), (1, "a")]}  # NWM also has (T, 1) yaw
    (src / "traj_00" / "traj_data.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
    ep = GNMDataset(src).episode(0)
    np.testing.assert_allclose(ep.extras["pose"][:, :2], pos, rtol=1e-6)
    np.testing.assert_allclose(ep.actions, nav_actions(pos, yaw))


def test_numpy1_module_paths_load(tmp_path, make_gnm):
    # numpy 1.x wrote `numpy.core.multiarray` where numpy 2 writes `numpy._core.multiarray` (protocol 2 GLOBALs
    # are newline-terminated text, so the rewrite below is the byte stream numpy 1.x produced)
    src, truth = make_gnm(tmp_path, n=1, test=())
    _, pos, yaw = truth["traj_00"]
    blob = pickle.dumps({"position": pos, "yaw": yaw, "s": np.float32(2.0)}, protocol=2)
    old = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != blob and b"numpy._core" not in old
    (src / "traj_00" / "traj_data.pkl").write_bytes(old)
    ep = GNMDataset(src).episode(0)
    np.testing.assert_allclose(ep.extras["pose"][:, 2], yaw, rtol=1e-6)


def test_split_names_stay_inside_the_source(tmp_path, make_gnm):
    src, _ = make_gnm(tmp_path, n=2, test=())
    secret = tmp_path / "data" / "outside" / "secret"
    secret.mkdir(parents=True)
    names = tmp_path / "data_splits" / "recon" / "train" / "traj_names.txt"
    for bad in ("../outside/secret", str(secret)):
        names.write_text(f"traj_00\n{bad}\n")
        with pytest.raises(ValueError, match=r"train/traj_names.txt: trajectory .* is not a relative path inside"):
            GNMDataset(src)
    (src / "link").symlink_to(secret, target_is_directory=True)  # a symlink out of the dataset
    names.write_text("traj_00\nlink\n")
    with pytest.raises(ValueError, match="leads outside"):
        GNMDataset(src)


def test_missing_pickle_is_an_error_not_a_skip(tmp_path, make_gnm):
    src, _ = make_gnm(tmp_path, n=2, test=())
    (src / "traj_01" / "traj_data.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"traj_01/traj_data.pkl: missing"):
        GNMDataset(src)  # listed in data_splits
    shutil.rmtree(tmp_path / "data_splits")
    with pytest.raises(FileNotFoundError, match=r"traj_01/traj_data.pkl: missing"):
        GNMDataset(src)  # no split files: every trajectory folder counts
    with pytest.raises(FileNotFoundError, match="traj_data.pkl"):
        convert("gnm", src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
