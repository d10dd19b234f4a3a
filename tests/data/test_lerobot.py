from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actwm.data.convert import write_episodes
from actwm.data.lerobot import PROGRESS_FILE, LeRobotDataset, LeRobotWriter
from actwm.data.lerobot.format import read_tasks
from actwm.episode import Episode
from actwm.video import write_mp4


def _write(root: Path, eps: list[Episode], frames_per_file: int = 25) -> LeRobotDataset:
    w = LeRobotWriter(root, fps=5.0, action_space="nav3", frames_per_file=frames_per_file)
    for e in eps:
        w.add_episode(e)
    w.finalize()
    return LeRobotDataset(root)


def test_v3_layout_follows_templates(tmp_path, episodes):
    ds = _write(tmp_path / "ds", episodes)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert (
        info["codebase_version"] == "v3.0"
        and info["total_episodes"] == 5
        and info["total_frames"] == sum(map(len, episodes))
    )
    feats = info["features"]
    assert feats["observation.camera.intrinsics"]["shape"] == [9]
    assert feats["observation.camera.extrinsics"]["shape"] == [16]
    assert "observation.depth" not in feats  # not a parquet column: described under actwm.extra_features
    assert info["actwm"]["extra_features"]["observation.depth"]["actwm"]["storage"] == "npz"
    assert info["actwm"]["extra_features"]["observation.segmentation"]["dtype"] == "int32"
    data0 = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    assert set(data0.column_names) == {k for k, f in feats.items() if f["dtype"] != "video"}
    assert feats["action"]["names"] == ["dx", "dy", "dyaw"]
    # several episodes share a file; every file named in the episodes table exists at its template path
    rows = pq.read_table(tmp_path / "ds/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert len(rows) == 2 and rows[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(10 / 5.0)
    for r in ds._episodes:
        assert (
            tmp_path
            / "ds"
            / info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        ).is_file()
        vk = "observation.images.front"
        assert (
            tmp_path
            / "ds"
            / info["video_path"].format(
                video_key=vk, chunk_index=r[f"videos/{vk}/chunk_index"], file_index=r[f"videos/{vk}/file_index"]
            )
        ).is_file()
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-001.parquet")
    for col in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert col in data.column_names
    assert data.column("index").to_pylist()[0] == 21  # global frame index continues across files
    assert pq.read_table(tmp_path / "ds/meta/tasks.parquet").column_names == ["task_index", "task"]  # index last
    assert not (tmp_path / "ds" / PROGRESS_FILE).exists()


def test_v3_round_trip_frames_actions_extras(tmp_path, episodes):
    ds = _write(tmp_path / "ds", episodes)
    assert len(ds) == 5 and ds.episode_lengths == [10, 11, 12, 13, 14] and ds.fps == 5.0 and ds.action_space == "nav3"
    for i, e in enumerate(episodes):
        r = ds.episode(i)
        err = np.abs(r.frames.astype(float) - e.frames).mean()
        assert err < 3.0, f"episode {i}: mean abs codec error {err:.2f}/255"
        # frame alignment: the per-frame brightness staircase (6 per frame) must match exactly
        np.testing.assert_allclose(r.frames.mean((1, 2, 3)), e.frames.mean((1, 2, 3)), atol=2.0)
        np.testing.assert_array_equal(r.actions, e.actions)
        np.testing.assert_array_equal(r.state, e.state)
        for k, v in e.extras.items():
            np.testing.assert_array_equal(r.extras[k], v, err_msg=k)
            assert r.extras[k].shape == v.shape
        assert r.meta["scene_id"] == f"scene{i}" and r.meta["split"] == e.meta["split"]
    assert ds.splits() == ["train", "train", "train", "test", "train"]


def test_stats_match_numpy(tmp_path, episodes):
    ds = _write(tmp_path / "ds", episodes)
    acts = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    st = ds.stats["action"]
    np.testing.assert_allclose(st["mean"], acts.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(st["std"], acts.std(0), rtol=1e-6)
    np.testing.assert_allclose(st["min"], acts.min(0))
    np.testing.assert_allclose(st["max"], acts.max(0))
    depth = np.concatenate([e.extras["depth"].ravel() for e in episodes]).astype(np.float64)
    assert ds.stats["observation.depth"]["mean"][0] == pytest.approx(depth.mean(), rel=1e-6)
    assert np.asarray(ds.stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


def test_odd_image_size_is_padded_and_cropped(tmp_path, make_ep):
    e = make_ep(6, seed=1, h=31, w=33, extras=False)
    ds = _write(tmp_path / "odd", [e])
    r = ds.episode(0)
    assert r.frames.shape == (6, 31, 33, 3)
    assert np.abs(r.frames.astype(float) - e.frames).mean() < 3.0


def test_mismatched_episode_is_rejected(tmp_path, episodes, make_ep):
    w = LeRobotWriter(tmp_path / "ds", fps=5.0, action_space="nav3")
    w.add_episode(episodes[0])
    with pytest.raises(ValueError, match="does not match"):
        w.add_episode(make_ep(8, seed=9, h=16, w=16))
    with pytest.raises(ValueError, match="action space"):
        bad = make_ep(8, seed=2)
        bad.action_space = "custom3"
        w.add_episode(bad)


def test_partial_store_is_reported(tmp_path, episodes):
    w = LeRobotWriter(tmp_path / "ds", fps=5.0, action_space="nav3", frames_per_file=10)
    for e in episodes[:3]:
        w.add_episode(e)
    with pytest.raises(FileNotFoundError, match="partially written"):
        LeRobotDataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="other settings"):
        LeRobotWriter(tmp_path / "ds", fps=10.0, action_space="nav3", frames_per_file=10)


class Crash(RuntimeError):
    pass


def test_killed_write_resumes_to_identical_dataset(tmp_path, make_ep):
    eps = [make_ep(8 + i % 3, seed=i, split="test" if i % 4 == 3 else "train") for i in range(7)]
    kw = {"frames_per_file": 20}

    def crash_after(k):
        def hook(idx, ep):
            if idx == k:
                raise Crash("killed")

        return hook

    write_episodes(tmp_path / "ref", iter(eps), total=7, writer_kwargs=kw, progress=False)
    with pytest.raises(Crash):
        write_episodes(
            tmp_path / "res", iter(eps), total=7, writer_kwargs=kw, progress=False, on_episode=crash_after(4)
        )
    prog = json.loads((tmp_path / "res" / PROGRESS_FILE).read_text())
    done = prog["num_episodes"]
    assert 0 < done < 7 and not (tmp_path / "res/meta/info.json").exists()
    assert not list((tmp_path / "res").rglob(".*.tmp.*")), "temp files of the killed file must be removed"
    write_episodes(tmp_path / "res", iter(eps[done:]), total=7, skip=done, writer_kwargs=kw, progress=False)
    a, b = LeRobotDataset(tmp_path / "ref"), LeRobotDataset(tmp_path / "res")
    assert a.info == {**b.info} and a.stats == b.stats and a.episode_lengths == b.episode_lengths
    for f in sorted((tmp_path / "ref").rglob("*.parquet")):
        rel = f.relative_to(tmp_path / "ref")
        assert pq.read_table(f).equals(pq.read_table(tmp_path / "res" / rel)), rel
    for f in sorted((tmp_path / "ref").rglob("*.mp4")):  # the encoder settings are deterministic
        assert f.read_bytes() == (tmp_path / "res" / f.relative_to(tmp_path / "ref")).read_bytes()
    for i in range(7):
        ea, eb = a.episode(i), b.episode(i)
        np.testing.assert_array_equal(ea.frames, eb.frames)
        np.testing.assert_array_equal(ea.actions, eb.actions)
        assert ea.meta == eb.meta


def _write_v21(root: Path, eps: list[Episode]) -> None:
    """A LeRobot v2.1 store as upstream writes it: one parquet and one mp4 per episode, episodes.jsonl."""
    vk = "observation.images.cam"
    h, w = eps[0].frames.shape[1:3]
    info = {
        "codebase_version": "v2.1",
        "robot_type": "test",
        "total_episodes": len(eps),
        "fps": 5,
        "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            vk: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channel"]},
            "observation.state": {"dtype": "float32", "shape": [4], "names": None},
            "action": {"dtype": "float32", "shape": [3], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    lines, start = [], 0
    for i, e in enumerate(eps):
        t = len(e)
        table = pa.table(
            {
                "observation.state": [list(map(float, r)) for r in e.state],  # plain list<double> as older writers do
                "action": [list(map(float, r)) for r in e.actions],
                "timestamp": np.arange(t, dtype=np.float32) / 5,
                "frame_index": np.arange(t),
                "episode_index": np.full(t, i),
                "index": np.arange(start, start + t),
                "task_index": np.zeros(t, np.int64),
            }
        )
        p = root / f"data/chunk-000/episode_{i:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, p)
        write_mp4(root / f"videos/chunk-000/{vk}/episode_{i:06d}.mp4", e.frames, fps=5)
        lines.append(json.dumps({"episode_index": i, "tasks": ["push the block"], "length": t}))
        start += t
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push the block"}) + "\n")


def test_v21_reader(tmp_path, make_ep):
    eps = [make_ep(9 + i, seed=i, extras=False) for i in range(3)]
    _write_v21(tmp_path / "v21", eps)
    ds = LeRobotDataset(tmp_path / "v21")
    assert ds.version == "v2.1" and len(ds) == 3 and ds.num_frames == 9 + 10 + 11 and ds.action_space == "custom3"
    for i, e in enumerate(eps):
        r = ds.episode(i)
        assert np.abs(r.frames.astype(float) - e.frames).mean() < 3.0
        np.testing.assert_allclose(r.frames.mean((1, 2, 3)), e.frames.mean((1, 2, 3)), atol=2.0)
        np.testing.assert_allclose(r.actions, e.actions, rtol=1e-6)
        np.testing.assert_allclose(r.state, e.state, rtol=1e-6)
        assert r.meta["task"] == "push the block"


def test_unsupported_version_and_missing_video(tmp_path, episodes, smooth):
    _write(tmp_path / "ds", episodes[:2])
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    shutil.copytree(tmp_path / "ds", tmp_path / "old")
    info["codebase_version"] = "v1.6"
    (tmp_path / "old/meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="v1.6"):
        LeRobotDataset(tmp_path / "old")
    video = tmp_path / "ds/videos/observation.images.front/chunk-000/file-000.mp4"
    write_mp4(video, smooth(5), fps=5)  # shorter than the episodes say
    with pytest.raises(ValueError, match="file-000.mp4"):
        LeRobotDataset(tmp_path / "ds").episode(1)


def test_crash_inside_flush_resumes(tmp_path, make_ep, monkeypatch):
    """A crash after the data parquet of a file was written but before its episodes/progress: re-run redoes it."""
    eps = [make_ep(8, seed=i) for i in range(5)]
    write_episodes(tmp_path / "ref", iter(eps), total=5, writer_kwargs={"frames_per_file": 16}, progress=False)
    calls = {"n": 0}
    original = LeRobotWriter._write_episodes_file

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(self, *a, **k)

    monkeypatch.setattr(LeRobotWriter, "_write_episodes_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_episodes(tmp_path / "res", iter(eps), total=5, writer_kwargs={"frames_per_file": 16}, progress=False)
    monkeypatch.setattr(LeRobotWriter, "_write_episodes_file", original)
    assert (tmp_path / "res/data/chunk-000/file-001.parquet").exists()  # written before the crash
    done = json.loads((tmp_path / "res" / PROGRESS_FILE).read_text())["num_episodes"]
    assert done == 2
    write_episodes(
        tmp_path / "res", iter(eps[done:]), total=5, skip=done, writer_kwargs={"frames_per_file": 16}, progress=False
    )
    a, b = LeRobotDataset(tmp_path / "ref"), LeRobotDataset(tmp_path / "res")
    assert a.info == b.info and a.stats == b.stats
    for i in range(5):
        np.testing.assert_array_equal(a.episode(i).frames, b.episode(i).frames)
        np.testing.assert_array_equal(a.episode(i).actions, b.episode(i).actions)
        _assert_same_frames(b.episode(i).frames, eps[i].frames, f"resumed episode {i}")


def test_convert_v21_to_v3(tmp_path, make_ep):
    from actwm.data.convert import convert

    eps = [make_ep(9 + i, seed=i, extras=False) for i in range(3)]
    _write_v21(tmp_path / "v21", eps)
    out = convert("lerobot", tmp_path / "v21", tmp_path / "v3", progress=False)
    src, dst = LeRobotDataset(tmp_path / "v21"), LeRobotDataset(out)
    assert dst.version == "v3.0" and dst.episode_lengths == src.episode_lengths
    for i in range(3):
        np.testing.assert_array_equal(dst.episode(i).actions, src.episode(i).actions)
        assert dst.episode_meta(i)["task"] == "push the block"
        _assert_same_frames(dst.episode(i).frames, eps[i].frames, f"converted episode {i}")


def _assert_same_frames(decoded: np.ndarray, written: np.ndarray, what: str) -> None:
    """Decoded frames equal the written ones up to codec error, frame by frame: the fixture's brightness rises 6
    per frame, so a shifted, dropped or reordered frame moves a frame's mean error to >= 6 / 255."""
    assert decoded.shape == written.shape, what
    per_frame = np.abs(decoded.astype(float) - written).mean((1, 2, 3))
    assert per_frame.max() < 3.0, f"{what}: per-frame mean abs error {per_frame.round(2)}"


def _tasked(make_ep, tasks: list[str]) -> list[Episode]:
    eps = [make_ep(6 + i, seed=i, extras=False) for i in range(len(tasks))]
    for e, task in zip(eps, tasks):
        e.meta["task"] = task
    return eps


def test_tasks_parquet_reads_as_lerobot_reads_it(tmp_path, make_ep):
    """lerobot loads meta/tasks.parquet with `pd.read_parquet` and takes the task string from the index:
    `meta.tasks.iloc[task_index].name` per frame, `tasks.loc[task].task_index` in `get_task_index`."""
    pd = pytest.importorskip("pandas")  # a test dependency (pip install -e .[test])
    eps = _tasked(make_ep, ["push the block", "", "open the drawer", "push the block"])
    _write(tmp_path / "ds", eps)
    tasks = pd.read_parquet(tmp_path / "ds/meta/tasks.parquet")  # lerobot's load_tasks
    assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
    assert [tasks.iloc[i].name for i in range(3)] == ["push the block", "", "open the drawer"]
    assert int(tasks.loc["open the drawer"].task_index) == 2 and int(tasks.loc[""].task_index) == 1
    for f in sorted((tmp_path / "ds/data").rglob("*.parquet")):  # lerobot's __getitem__: the frame's task string
        d = pq.read_table(f).to_pydict()
        for ti, ei in zip(d["task_index"], d["episode_index"]):
            assert tasks.iloc[ti].name == eps[ei].meta["task"]
    # the file is the one lerobot itself writes (DataFrame with a "task" index, saved by to_parquet)
    ref = pd.DataFrame({"task_index": range(3)}, index=pd.Index(["push the block", "", "open the drawer"], name="task"))
    ref.to_parquet(tmp_path / "ref.parquet")
    pd.testing.assert_frame_equal(tasks, pd.read_parquet(tmp_path / "ref.parquet"))
    ours, theirs = pq.read_schema(tmp_path / "ds/meta/tasks.parquet"), pq.read_schema(tmp_path / "ref.parquet")
    assert ours.names == theirs.names
    assert (
        json.loads(ours.metadata[b"pandas"])["index_columns"] == json.loads(theirs.metadata[b"pandas"])["index_columns"]
    )
    assert LeRobotDataset(tmp_path / "ds").episode_meta(2)["task"] == "open the drawer"


def test_reader_reads_every_tasks_layout(tmp_path):
    """Our reader reads lerobot's named index, lerobot 0.4's unnamed index and actwm's old plain columns."""
    strings = ["push", "", "open"]
    layouts = {
        "plain": pa.table({"task_index": [0, 1, 2], "task": strings}),
        "unnamed_index": pa.table({"task_index": [0, 1, 2], "__index_level_0__": strings}),
    }
    pd = pytest.importorskip("pandas")
    layouts["pandas_named"] = pa.Table.from_pandas(
        pd.DataFrame({"task_index": range(3)}, index=pd.Index(strings, name="task"))
    )
    layouts["pandas_unnamed"] = pa.Table.from_pandas(pd.DataFrame({"task_index": range(3)}, index=strings))
    for name, table in layouts.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        assert read_tasks(tmp_path / f"{name}.parquet") == {0: "push", 1: "", 2: "open"}, name
    pq.write_table(pa.table({"task_index": [0]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet"):
        read_tasks(tmp_path / "bad.parquet")


def test_frame_index_and_timestamp_follow_lerobot(tmp_path, episodes):
    """frame_index is 0..T-1 within each episode, timestamp = frame_index / fps, index is global and dense."""
    ds = _write(tmp_path / "ds", episodes, frames_per_file=25)
    seen = 0
    for i, r in enumerate(ds._episodes):
        table = pq.read_table(ds._data_file(r)).to_pydict()
        rows = [k for k, e in enumerate(table["episode_index"]) if e == i]
        t = len(episodes[i])
        assert len(rows) == t
        frame_index = np.array([table["frame_index"][k] for k in rows])
        np.testing.assert_array_equal(frame_index, np.arange(t))
        np.testing.assert_array_equal([table["timestamp"][k] for k in rows], (np.arange(t) / 5.0).astype(np.float32))
        np.testing.assert_array_equal([table["index"][k] for k in rows], np.arange(seen, seen + t))
        assert (r["dataset_from_index"], r["dataset_to_index"]) == (seen, seen + t)
        seen += t


# ------------------------------------------------------------------------------- hostile datasets


def _edit_info(root: Path, edit) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    edit(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def _outside_files(tmp_path: Path, inside: list[Path]) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and not any(p.is_relative_to(d) for d in inside)]


def test_hostile_extra_feature_cannot_write_outside_the_output(tmp_path, make_ep):
    """A source whose info.json names an extra feature with a '../' key: convert must refuse it, not write
    `extras/observation./../../../../outside/...npz` outside the destination."""
    from actwm.data.convert import convert

    src = tmp_path / "src"
    _write(src, [make_ep(6, seed=0, extras=False)])
    data = src / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    hostile = "/../../../../outside"
    column = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(6 * 32 * 32, np.float32)), 32 * 32)
    pq.write_table(table.append_column(hostile, column), data)

    def add_feature(info):
        info["features"][hostile] = {
            "dtype": "float32",
            "shape": [32 * 32],
            "names": None,
            "actwm": {"extra_key": hostile, "array_shape": [32, 32], "storage": "parquet"},
        }

    _edit_info(src, add_feature)
    before = set(_outside_files(tmp_path, [src]))
    with pytest.raises(ValueError, match=r"info.json.*'/\.\./\.\./\.\./\.\./outside'"):
        convert("lerobot", src, tmp_path / "work" / "dst", progress=False)
    assert set(_outside_files(tmp_path, [src])) == before, "nothing may be written, least of all outside dst"


@pytest.mark.parametrize(
    ("field", "template", "message"),
    [
        ("data_path", "../outside/{chunk_index}-{file_index}.parquet", "leaves the dataset"),
        ("data_path", "data/chunk-{chunk_index:03d}/../../../outside/{file_index}.parquet", "leaves the dataset"),
        ("video_path", "{ABS}/{video_key}-{chunk_index}-{file_index}.mp4", "not a relative path"),
        ("data_path", "data/{chunk_index.__class__}/{file_index}.parquet", "allowed fields"),
        ("video_path", "videos/{video_key}/{0}.mp4", "allowed fields"),
    ],
)
def test_hostile_path_templates_are_refused(tmp_path, make_ep, field, template, message):
    """Templates that point outside the root are refused even when the file they name exists there."""
    src = tmp_path / "ds"
    _write(src, [make_ep(6, seed=0, extras=False)])
    template = template.replace("{ABS}", str(tmp_path / "abs"))
    ds = LeRobotDataset(src)
    r = ds._episodes[0]
    # plant a real copy of the file where the hostile template points, so only the check can stop the read
    vk = ds.video_key
    values = {"chunk_index": 0, "file_index": 0, "video_key": vk}
    with contextlib.suppress(KeyError, IndexError, AttributeError, ValueError):
        target = (src / template.format(**values)) if not template.startswith("/") else Path(template.format(**values))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ds._data_file(r) if field == "data_path" else ds._video_file(r)[0], target)
    _edit_info(src, lambda info: info.__setitem__(field, template))
    with pytest.raises(ValueError, match=rf"info.json.*{field}.*{message}|info.json.*{message}"):
        LeRobotDataset(src).episode(0)


def test_hostile_video_key_is_refused(tmp_path, make_ep):
    src = tmp_path / "ds"
    _write(src, [make_ep(6, seed=0, extras=False)])

    def rename(info):
        info["features"]["../../x"] = info["features"].pop("observation.images.front")
        info["actwm"]["video_key"] = "../../x"

    _edit_info(src, rename)
    with pytest.raises(ValueError, match=r"info.json.*'\.\./\.\./x' is not allowed"):
        LeRobotDataset(src)


def test_writer_refuses_extra_keys_that_leave_the_root(tmp_path, make_ep):
    ep = make_ep(6, seed=0, extras=False)
    ep.extras["/../../../x"] = np.zeros((6, 32, 32), np.float32)
    w = LeRobotWriter(tmp_path / "out" / "ds", fps=5.0, action_space="nav3")
    with pytest.raises(ValueError, match=r"'observation\./\.\./\.\./\.\./x' is not allowed"):
        w.add_episode(ep)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()
