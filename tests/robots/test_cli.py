"""`actwm kvaf render` on a small simulated manip store: its three outputs, their agreement with pybullet's
recorded end-effector positions, replay from ee7 actions through IK, and clear errors on incomplete datasets."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from actwm import cli as actwm_cli
from actwm.data.convert import simulate
from actwm.data.lerobot import LeRobotDataset, LeRobotWriter
from actwm.video import read_video


def main(argv: list[str]) -> int:
    """`actwm kvaf ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["kvaf", *argv])


FRAMES = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate(
        "manip", tmp_path_factory.mktemp("manip") / "store", episodes=1, frames=FRAMES, size=64, progress=False
    )


def _recorded_ee_pixels(store, size: int) -> np.ndarray:
    """The sim's own ee positions (pybullet getLinkState at record time) projected with the recorded camera."""
    ds = LeRobotDataset(store)
    arr = ds.episode_arrays(0)
    names = ds.features["observation.state"]["names"]
    ee = arr["state"][:, [names.index(n) for n in ("ee_x", "ee_y", "ee_z")]].astype(np.float64)
    k = arr["intrinsics"].reshape(-1, 3, 3).astype(np.float64)
    e = arr["extrinsics"].reshape(-1, 4, 4).astype(np.float64)
    cam = np.einsum("tij,tj->ti", e[:, :3, :3], ee) + e[:, :3, 3]
    s = size / 64
    u = s * (k[:, 0, 0] * cam[:, 0] / cam[:, 2] + k[:, 0, 2]) + (s - 1) / 2
    v = s * (k[:, 1, 1] * cam[:, 1] / cam[:, 2] + k[:, 1, 2]) + (s - 1) / 2
    return np.stack([u, v], -1)


def test_render_writes_video_overlay_and_landmarks(store, tmp_path):
    out = tmp_path / "out"
    marks_path = tmp_path / "marks" / "lm.json"
    argv = [
        "render",
        f"{store}:0",
        "--out",
        str(out),
        "--overlay",
        "--size",
        "128",
        "--landmarks-json",
        str(marks_path),
    ]
    assert main(argv) == 0
    kvaf, _ = read_video(out / "kvaf.mp4")
    over, _ = read_video(out / "overlay.mp4")
    assert kvaf.shape == over.shape == (FRAMES, 128, 128, 3)
    marks = json.loads(marks_path.read_text())["frames"]
    assert len(marks) == FRAMES and all(len(m["joints"]) == 7 for m in marks)
    ee = np.array([m["ee"] for m in marks])
    ref = _recorded_ee_pixels(store, 128)
    assert np.abs(ee - ref).max() < 0.05  # measured ~1e-5 px (float32 storage); the issue asks for 1 px
    for t, (u, v) in enumerate(np.round(ref).astype(int)):  # the heatmap / gripper / axes are drawn at the ee
        assert kvaf[t, v - 1 : v + 2, u - 1 : u + 2].max() > 100
    assert kvaf[:, 120:].max() < 30  # the arm never reaches the bottom rows: black canvas there
    real = LeRobotDataset(store).frames(0)
    assert np.abs(over[:, 120:].astype(int) - np.repeat(np.repeat(real, 2, 1), 2, 2)[:, 120:]).mean() < 8
    record = json.loads((out / "kvaf.json").read_text())
    assert record["episode"] == 0 and record["source"] == "state" and "actwm_version" in record


def test_render_from_actions_follows_the_recorded_arm(store, tmp_path):
    assert main(["render", f"{store}:0", "--out", str(tmp_path / "a"), "--from", "actions"]) == 0
    ee = np.array([m["ee"] for m in json.loads((tmp_path / "a" / "landmarks.json").read_text())["frames"]])
    assert np.abs(ee - _recorded_ee_pixels(store, 64)).max() < 0.05  # measured ~3e-4 px


def _rewrite(store, dest, drop_calibration=False, drop_state=False):
    ds = LeRobotDataset(store)
    ep = ds.episode(0)
    if drop_calibration:
        ep.extras = {k: v for k, v in ep.extras.items() if k not in ("intrinsics", "extrinsics")}
    if drop_state:
        ep = replace(ep, state=ep.state[:, :3], meta={k: v for k, v in ep.meta.items() if k != "state_names"})
    w = LeRobotWriter(dest, fps=ds.fps, action_space="ee7", info_extra={"world": "manip"}, crf=0)
    w.add_episode(ep)
    w.finalize()
    return dest


@pytest.mark.parametrize(
    "kind, message",
    [
        ("calibration", "no camera calibration: observation.camera.intrinsics and observation.camera.extrinsics"),
        ("state", "no joint states: observation.state lacks q0, q1"),
        ("ee_link", "no end-effector link 'tool0'"),
    ],
)
def test_incomplete_inputs_fail_clearly_without_output(store, tmp_path, capsys, kind, message):
    src = store
    if kind != "ee_link":
        src = _rewrite(store, tmp_path / "bad", drop_calibration=kind == "calibration", drop_state=kind == "state")
    extra = ["--ee-link", "tool0"] if kind == "ee_link" else []
    out = tmp_path / "out"
    assert main(["render", f"{src}:0", "--out", str(out), "--overlay", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_recover_reads_back_the_rendered_video(store, tmp_path, capsys):
    """`actwm kvaf recover` on the mp4 that `render` wrote (lossy H.264) finds every cue again."""
    out = tmp_path / "r"
    assert main(["render", f"{store}:0", "--out", str(out), "--size", "128"]) == 0
    rec_path = tmp_path / "rec" / "recovered.json"
    assert main(["recover", str(out / "kvaf.mp4"), "--episode", f"{store}:0", "--json", str(rec_path)]) == 0
    assert "detection rate: heatmap 1.00" in capsys.readouterr().out
    rec = json.loads(rec_path.read_text())
    err = rec["errors"]
    assert err["detection_rate"]["all"] >= 0.75
    assert err["pixel_error"] < 0.5 and err["translation_error"] < 0.04 and err["rotation_error"] < 0.15
    ee = np.array([u for u in rec["frames"]["ee"]], dtype=np.float64)
    assert np.abs(ee - _recorded_ee_pixels(store, 128)).max() < 1.0
    assert len(rec["actions"]) == FRAMES - 1 and len(rec["frames"]["opening"]) == FRAMES
    assert rec["video_sha256"] and rec["episode"] == 0
