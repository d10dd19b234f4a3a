"""Rollouts of a KVAF world model: the user gives actions; the KVAF video of the commanded motion is rendered
from them (ee7 through the robot's IK) and conditions generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actwm import cli as actwm_cli
from actwm.data.convert import simulate
from actwm.data.lerobot import LeRobotDataset
from actwm.geometry import project_points
from actwm.models.world_model import WorldModel
from actwm.robots.recover import heatmap_centre
from actwm.robots.render import RenderConfig, scale_intrinsics
from actwm.rollout.kvaf import episode_start, kvaf_video
from actwm.rollout.rollout import RolloutConfig, rollout


def rollout_main(argv: list[str]) -> int:
    """`actwm rollout ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["rollout", *argv])


SIZE, FRAMES = 64, 9


@pytest.fixture(scope="module")
def manip(tmp_path_factory):
    return simulate(
        "manip", tmp_path_factory.mktemp("m") / "store", episodes=1, frames=FRAMES, size=SIZE, progress=False
    )


def test_kvaf_of_commanded_ee7_actions_follows_the_recorded_arm(manip):
    ds = LeRobotDataset(manip)
    arrays = ds.episode_arrays(0)
    names = list(ds.features["observation.state"]["names"])
    ee = arrays["state"][:, [names.index(k) for k in ("ee_x", "ee_y", "ee_z")]].astype(np.float64)
    hw = (SIZE, SIZE)
    start = episode_start(str(manip), 0, 0, hw)
    video = kvaf_video(torch.from_numpy(arrays["action"][None].astype(np.float32)), start, "ee7")
    assert video.shape == (1, FRAMES, 3, *hw) and float(video.min()) >= -1 and float(video.max()) <= 1
    k = scale_intrinsics(arrays["intrinsics"].reshape(-1, 3, 3)[0], (SIZE, SIZE), hw)
    e = arrays["extrinsics"].reshape(-1, 4, 4)[0]
    for t in range(FRAMES):
        frame = ((video[0, t].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        centre = heatmap_centre(frame, RenderConfig(height=hw[0], width=hw[1]).sigma_px)
        uv, _ = project_points(ee[t : t + 1], k, e)
        assert centre is not None and np.hypot(*(centre - uv[0])) <= 1.0, (t, centre, uv)


def _kvaf_model(tmp_path=None) -> WorldModel:
    torch.manual_seed(0)
    wm = WorldModel.from_preset("wan2.1-tiny", "ee7", conditioning="kvaf", clip_frames=5)
    for fusion in wm.kvaf.fusions.values():  # open the gates so the KVAF stream reaches the video
        torch.nn.init.constant_(fusion.gate.bias, 0.5)
    return wm.eval()


def test_rollout_is_conditioned_on_the_kvaf_of_the_actions(manip):
    wm = _kvaf_model()
    first = torch.rand(1, 3, 32, 32) * 2 - 1
    actions = torch.zeros(1, FRAMES, 7)
    kv = torch.rand(1, FRAMES, 3, 32, 32) * 2 - 1
    cfg = RolloutConfig(steps=2)
    a = rollout(wm, first, actions, cfg=cfg, kvaf=kv)
    b = rollout(wm, first, actions, cfg=cfg, kvaf=-kv)
    assert a.shape == (1, FRAMES, 3, 32, 32)
    assert not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="KVAF video"):
        rollout(wm, first, actions, cfg=cfg)


def test_cli_rollout_of_a_kvaf_checkpoint_renders_the_kvaf_itself(manip, tmp_path, capsys):
    wm = _kvaf_model()
    wm.config.image_size = [SIZE, SIZE]
    wm.save(tmp_path / "ckpt")
    out = tmp_path / "out"
    code = rollout_main(
        [
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--episode",
            f"{manip}:0",
            "--frames",
            "5",
            "--steps",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and len(list((out / "pred" / "rollout").glob("*.png"))) == 5
    frame = tmp_path / "f.png"
    frame.write_bytes(next((out / "gt" / "rollout").glob("*.png")).read_bytes())
    actions = tmp_path / "a.npy"
    np.save(actions, np.zeros((5, 7), np.float32))
    code = rollout_main(
        [
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--frame",
            str(frame),
            "--actions",
            str(actions),
            "--out",
            str(tmp_path / "o2"),
        ]
    )
    assert code == 2 and "--episode" in capsys.readouterr().err
