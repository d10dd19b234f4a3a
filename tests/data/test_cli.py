from __future__ import annotations

import json

import numpy as np
import pytest

from actwm.cli import main as actwm_main
from actwm.data.cli import main
from actwm.data.convert import TEST_SEED_OFFSET, simulate
from actwm.data.lerobot import PROGRESS_FILE, LeRobotDataset


def _sim():
    try:
        import actwm.sim  # noqa: F401
    except ImportError as exc:  # only while the simulators are being written in parallel
        pytest.skip(f"actwm.sim is not importable yet ({exc}); the simulate round trip needs it")
    return actwm.sim


@pytest.mark.parametrize("world", ["nav", "manip"])
def test_simulate_round_trip(tmp_path, world, capsys):
    sim = _sim()
    out = tmp_path / world
    rc = main(
        [
            "simulate",
            world,
            "--episodes",
            "2",
            "--test-episodes",
            "1",
            "--frames",
            "6",
            "--size",
            "32",
            "--out",
            str(out),
            "--seed",
            "3",
            "--no-progress",
        ]
    )
    assert rc == 0 and "action_space" in capsys.readouterr().out
    ds = LeRobotDataset(out)
    assert len(ds) == 3 and ds.splits() == ["train", "train", "test"]
    seeds = [3, 4, TEST_SEED_OFFSET + 3]
    for i, ep in enumerate(sim.record_episodes(world, seeds=seeds, frames=6, size=32, progress=False)):
        r = ds.episode(i)
        err = np.abs(r.frames.astype(float) - ep.frames).mean()
        assert err < 1.0, f"{world} episode {i}: mean abs error {err:.2f}/255 (near-lossless default)"
        np.testing.assert_array_equal(r.actions, ep.actions)
        np.testing.assert_array_equal(r.state, ep.state)
        for k in ("depth", "segmentation", "intrinsics", "extrinsics"):
            np.testing.assert_array_equal(r.extras[k], ep.extras[k], err_msg=k)
        assert r.meta["scene_id"] == ep.meta["scene_id"] == seeds[i]
        assert r.action_space == ("nav3" if world == "nav" else "ee7") and r.fps == ep.fps


def test_simulate_killed_and_resumed(tmp_path):
    _sim()
    kw = dict(episodes=3, frames=5, size=32, test_episodes=1, frames_per_file=10, progress=False)
    simulate("nav", tmp_path / "ref", **kw)

    def crash(idx, ep):
        if idx == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate("nav", tmp_path / "res", on_episode=crash, **kw)
    assert json.loads((tmp_path / "res" / PROGRESS_FILE).read_text())["num_episodes"] == 2
    with pytest.raises(ValueError, match="other settings"):  # resuming with another plan is refused
        simulate("nav", tmp_path / "res", **{**kw, "seed": 5})
    simulate("nav", tmp_path / "res", **kw)
    with pytest.raises(ValueError, match="another job"):
        simulate("nav", tmp_path / "res", **{**kw, "episodes": 4})
    a, b = LeRobotDataset(tmp_path / "ref"), LeRobotDataset(tmp_path / "res")
    assert a.info == b.info and a.stats == b.stats and b.splits() == ["train"] * 3 + ["test"]
    for i in range(4):
        np.testing.assert_array_equal(a.episode(i).frames, b.episode(i).frames)
        np.testing.assert_array_equal(a.episode(i).actions, b.episode(i).actions)


def test_convert_and_info_cli(tmp_path, capsys, make_gnm):
    src, _ = make_gnm(tmp_path, n=3, test=(1,))
    assert actwm_main(["data", "convert", "--from", "gnm", "--no-progress", str(src), str(tmp_path / "lr")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "lr"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 3 and info["frames"] == 18 and info["fps"] == 4.0 and info["action_space"] == "nav3"
    assert info["splits"] == {"train": 2, "test": 1} and info["metric_spacing"] == 0.25
    assert len(info["stats"]["action"]["mean"]) == 3
    assert main(["convert", "--from", "bag", str(src), str(tmp_path / "x")]) == 2
    assert "unknown source format 'bag'" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "missing/meta/info.json" in capsys.readouterr().err


def test_convert_sigkilled_then_rerun(tmp_path, make_gnm):
    """A convert process killed with SIGKILL half-way, then re-run, gives the same dataset as one clean run."""
    import subprocess
    import sys

    from actwm.data.convert import convert

    src, _ = make_gnm(tmp_path, n=5, t=6, test=(4,))
    code = (
        "import os, signal, sys\n"
        "from actwm.data.convert import convert\n"
        "def hook(i, ep):\n"
        "    if i == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "convert('gnm', sys.argv[1], sys.argv[2], frames_per_file=12, progress=False, on_episode=hook)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path / "res")], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert not (tmp_path / "res/meta/info.json").exists()
    assert json.loads((tmp_path / "res" / PROGRESS_FILE).read_text())["num_episodes"] == 2
    convert("gnm", src, tmp_path / "res", frames_per_file=12, progress=False)
    convert("gnm", src, tmp_path / "ref", frames_per_file=12, progress=False)
    a, b = LeRobotDataset(tmp_path / "ref"), LeRobotDataset(tmp_path / "res")
    assert a.info["total_episodes"] == b.info["total_episodes"] == 5 and a.stats == b.stats
    assert not list((tmp_path / "res").rglob(".*.tmp.*"))
    for i in range(5):
        np.testing.assert_array_equal(a.episode(i).frames, b.episode(i).frames)
        np.testing.assert_array_equal(a.episode(i).actions, b.episode(i).actions)
        assert a.episode_meta(i)["split"] == b.episode_meta(i)["split"]


def test_simulate_slower_robot_from_cli(tmp_path, capsys):
    import numpy as np

    from actwm.data.cli import main
    from actwm.data.lerobot import LeRobotDataset

    out = tmp_path / "slow"
    rc = main(
        [
            "simulate",
            "nav",
            "--episodes",
            "1",
            "--frames",
            "12",
            "--size",
            "32",
            "--out",
            str(out),
            "--robot-speed",
            "0.05",
            "--robot-turn-rate",
            "0.08",
            "--no-progress",
        ]
    )
    assert rc == 0
    ep = LeRobotDataset(out).episode(0)
    assert np.abs(ep.actions[:, 2]).max() <= 0.08 + 1e-5
    assert (
        main(
            [
                "simulate",
                "manip",
                "--episodes",
                "1",
                "--frames",
                "3",
                "--out",
                str(tmp_path / "m"),
                "--robot-speed",
                "0.1",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "nav world only" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ broken stores and bad options


@pytest.fixture
def store(tmp_path, make_ep):
    """A small finished store of 3 episodes in 2 data/video files."""
    from actwm.data.lerobot import LeRobotWriter

    w = LeRobotWriter(tmp_path / "store", fps=5.0, action_space="nav3", frames_per_file=16)
    for i in range(3):
        w.add_episode(make_ep(8, seed=i))
    return w.finalize()


def _info_error(path, capsys) -> str:
    rc = main(["info", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_info_reports_a_renamed_action_column(store, capsys):
    import pyarrow.parquet as pq

    f = store / "data/chunk-000/file-001.parquet"
    pq.write_table(pq.read_table(f).rename_columns(["act" if c == "action" else c for c in pq.read_schema(f).names]), f)
    err = _info_error(store, capsys)
    assert "file-001.parquet" in err and "'action'" in err


def test_info_reports_a_truncated_parquet(store, capsys):
    f = store / "data/chunk-000/file-000.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert "data/chunk-000/file-000.parquet: cannot read parquet" in _info_error(store, capsys)


def test_info_reports_missing_and_truncated_videos_and_extras(store, capsys):
    video = store / "videos/observation.images.front/chunk-000/file-001.mp4"
    data = video.read_bytes()
    video.unlink()
    assert "file-001.mp4: no such video file" in _info_error(store, capsys)
    video.write_bytes(data[: len(data) // 3])
    assert "file-001.mp4" in _info_error(store, capsys)
    video.write_bytes(data)
    npz = store / "extras/observation.depth/chunk-000/file-000.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    assert "observation.depth/chunk-000/file-000.npz: cannot read npz" in _info_error(store, capsys)


def test_info_of_a_sound_store_passes(store, capsys):
    assert main(["info", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3


SIM = ["simulate", "nav", "--episodes", "1", "--frames", "3"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*SIM, "--out", "{FILE}"], "exists and is not a directory"),
        ([*SIM, "--out", "{FILE}/sub"], "is not a directory"),
        ([*SIM, "--out", "/proc/actwm-test/out"], "/proc/actwm-test/out: not writable"),  # even for root
        ([*SIM, "--size", "0", "--out", "{DIR}"], "--size"),
        ([*SIM, "--crf", "99", "--out", "{DIR}"], "--crf"),
        ([*SIM, "--frames-per-file", "0", "--out", "{DIR}"], "--frames-per-file"),
        (["convert", "--from", "lerobot", "{STORE}", "{FILE}"], "exists and is not a directory"),
        (["convert", "--from", "lerobot", "--fps", "0", "{STORE}", "{DIR}"], "--fps"),
        (["convert", "--from", "lerobot", "{STORE}", "{STORE}"], "is the source itself"),
    ],
)
def test_bad_options_give_one_line_and_no_output(tmp_path, store, capsys, argv, message):
    (tmp_path / "file").write_text("not a directory")
    subs = {"{FILE}": str(tmp_path / "file"), "{DIR}": str(tmp_path / "new"), "{STORE}": str(store)}
    argv = [subs.get(a, a.replace("{FILE}", subs["{FILE}"])) for a in argv]
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main([*argv, "--no-progress"] if argv[0] == "simulate" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before, "no partial output"


def test_episode_out_of_range_is_a_clear_error(store):
    from actwm.data.lerobot import LeRobotDataset

    ds = LeRobotDataset(store)
    with pytest.raises(ValueError, match=r"episode 7 out of range \(0\.\.2\)"):
        ds.episode(7)
    with pytest.raises(IndexError):  # still an IndexError for code that iterates by index
        ds.episode_arrays(-1)


def test_convert_sigkilled_inside_the_first_file_resumes(tmp_path, make_gnm):
    """Killed before any file set was committed (its mp4 half-encoded in a temp file): the re-run cleans the temp
    file, resumes and gives the same store as one clean run."""
    import subprocess
    import sys

    from actwm.data.convert import convert

    src, _ = make_gnm(tmp_path, n=3, t=6, test=(2,))
    code = (
        "import os, signal, sys\n"
        "from actwm.data.convert import convert\n"
        "def hook(i, ep):\n"
        "    if i == 1:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "convert('gnm', sys.argv[1], sys.argv[2], frames_per_file=100, progress=False, on_episode=hook)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path / "res")], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert json.loads((tmp_path / "res" / PROGRESS_FILE).read_text())["num_episodes"] == 0
    assert list((tmp_path / "res").rglob(".*.tmp*")), "the killed writer's temp mp4 is there to be cleaned"
    convert("gnm", src, tmp_path / "res", frames_per_file=100, progress=False)
    convert("gnm", src, tmp_path / "ref", frames_per_file=100, progress=False)
    assert not list((tmp_path / "res").rglob(".*.tmp*"))
    for f in sorted(p for p in (tmp_path / "ref").rglob("*") if p.is_file()):
        assert f.read_bytes() == (tmp_path / "res" / f.relative_to(tmp_path / "ref")).read_bytes(), f


def _set(path: list, value):
    def edit(info):
        for key in path[:-1]:
            info = info[key]
        info[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (_set(["actwm"], []), "'actwm'"),
        (_set(["actwm", "extra_features"], [1]), "actwm.extra_features"),
        (_set(["features", "action", "shape"], "abc"), "'action'"),
        (_set(["features", "observation.images.front", "shape"], ["a"]), "observation.images.front"),
        (_set(["features", "observation.pose", "actwm", "storage"], "pickle"), "observation.pose"),
        (_set(["features", "observation.pose", "actwm", "array_shape"], [7]), "observation.pose"),
        (_set(["features", "observation.state", "shape"], [9]), "observation.state"),
    ],
)
def test_info_reports_malformed_features(store, capsys, edit, names):
    """Malformed feature descriptions in info.json: one line naming the file and the feature, never a traceback
    or a summary of a store that cannot be read."""
    info = json.loads((store / "meta/info.json").read_text())
    edit(info)
    (store / "meta/info.json").write_text(json.dumps(info))
    err = _info_error(store, capsys)
    assert ("info.json" in err or "file-000.parquet" in err) and names in err, err
