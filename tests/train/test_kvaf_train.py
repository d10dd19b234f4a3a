"""`actwm train --conditioning kvaf|kvaf+actions`: clips carry their KVAF video rendered from their joints and
calibration, the Batch holds it, and a KVAF world model trains end to end on a simulated manip store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actwm.batch import Batch
from actwm.data.clips import ClipDataset
from actwm.data.convert import simulate
from actwm.geometry import project_points
from actwm.models.world_model import WorldModel
from actwm.robots.recover import heatmap_centre
from actwm.robots.render import RenderConfig
from actwm.train import TrainConfig, train
from actwm.train.kvaf_data import KvafClips
from tests.train.conftest import DictDataset

SIZE = 64


@pytest.fixture(scope="module")
def manip(tmp_path_factory):
    return simulate(
        "manip", tmp_path_factory.mktemp("manip") / "store", episodes=2, frames=12, size=SIZE, progress=False
    )


def test_clip_kvaf_is_aligned_with_the_recorded_arm(manip):
    ds = KvafClips(ClipDataset(manip, context=1, horizon=4, split="train"))
    item = ds[0]
    assert item["kvaf"].shape == item["video"].shape and item["kvaf"].dtype == torch.float32
    assert 0.0 <= float(item["kvaf"].min()) and float(item["kvaf"].max()) <= 1.0
    # the end-effector heatmap's centre (the robots layer's recovery) sits on the recorded ee position
    state = item["state"].numpy().astype(np.float64)
    names = list(ds.store.features["observation.state"]["names"])
    ee = state[:, [names.index(k) for k in ("ee_x", "ee_y", "ee_z")]]
    k, e = item["intrinsics"].numpy().astype(np.float64), item["extrinsics"].numpy().astype(np.float64)
    for t in range(len(ee)):
        uv, _ = project_points(ee[t : t + 1], k[t], e[t])
        frame = (item["kvaf"][t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        centre = heatmap_centre(frame, RenderConfig(height=SIZE, width=SIZE).sigma_px)
        assert centre is not None and np.hypot(*(centre - uv[0])) <= 1.0, (t, centre, uv)
    batch = Batch.from_collated(torch.utils.data.default_collate([item]))
    assert batch.kvaf.shape == batch.video.shape
    assert torch.allclose(batch.kvaf[0], item["kvaf"] * 2 - 1)  # [0, 1] item pixels -> [-1, 1] like the video


def test_train_kvaf_and_actions_end_to_end(manip, tmp_path):
    cfg = TrainConfig(
        data=str(manip),
        out=str(tmp_path / "run"),
        model="wan2.1-tiny",
        conditioning="kvaf+actions",
        context=1,
        horizon=4,
        size=32,
        steps=2,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=0,
        log_every=1,
        cpu=True,
    )
    result = train(cfg, progress=False)
    assert all(np.isfinite(result.losses))
    wm = WorldModel.load(result.final_dir)
    assert wm.config.conditioning == "kvaf+actions" and wm.kvaf is not None


def test_kvaf_conditioning_without_joints_or_calibration_is_a_clear_error(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), conditioning="kvaf", steps=1, batch_size=2, cpu=True)
    with pytest.raises(ValueError, match="joint states and camera calibration"):
        train(cfg, dataset=DictDataset(), progress=False)
    with pytest.raises(ValueError, match="conditioning"):
        TrainConfig(out=str(tmp_path / "run"), conditioning="pictures")
