"""World models behind the planning interface: an actwm checkpoint batches all candidates in one rollout."""

import hashlib

import numpy as np
import pytest
import torch

from actwm.models.world_model import WorldModel
from actwm.planning.translate import FrameStep, closing_frames, model_actions
from actwm.planning.worlds import CheckpointWorld, make_world_model
from actwm.planning.worlds_diffusers import I2VConfig
from actwm.rollout.rollout import RolloutConfig, rollout
from tests.planning.conftest import free_episode
from tests.rollout.test_rollout import tiny_nav_model


@pytest.fixture(scope="module")
def tiny_wm():
    return tiny_nav_model()


def test_checkpoint_world_imagines_all_candidates_in_one_batched_rollout(tiny_wm, mini_task, monkeypatch):
    world = CheckpointWorld(tiny_wm, RolloutConfig(steps=2), frame_step=FrameStep(0.13, 0.4))
    world.bind(mini_task)
    world.reset(seed=3)
    obs = mini_task.reset(_episode(mini_task))
    plans = np.array([[0, 1], [2, 0], [1, 1]])
    calls = []
    real_generate = tiny_wm.generate
    monkeypatch.setattr(tiny_wm, "generate", lambda *a, **k: calls.append(a[0].shape[0]) or real_generate(*a, **k))
    frames = world.imagine(obs, plans)
    n = 2  # forward 0.25 m at 0.13 m per frame; 22.5 degrees at 0.4 rad per frame
    assert frames.shape == (3, 2, 3, 32, 32) and float(frames.min()) >= 0 and float(frames.max()) <= 1
    assert calls == [3]  # one generate call for all M = 3 candidates (the 5-frame plan fits one chunk)
    # the same frames as rolling out each candidate alone with its own seed, at the closing frames
    raw = torch.as_tensor(model_actions(mini_task.vocabulary, plans, n), dtype=torch.float32)
    first = torch.from_numpy(obs.rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    seeds = [3 * 100_003 + i for i in range(3)]
    for i in range(3):
        alone = rollout(tiny_wm, first, raw[i : i + 1], cfg=RolloutConfig(steps=2), seeds=[seeds[i]])
        expected = ((alone[0, closing_frames(2, n)] + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(frames[i], expected, atol=1e-4, rtol=1e-4)


def test_world_model_whose_action_space_does_not_fit_the_task_is_refused(mini_task):
    wm = WorldModel.from_preset("wan2.1-tiny", "ee7", image_size=[32, 32], clip_frames=9)
    with pytest.raises(ValueError, match="does not fit task"):
        CheckpointWorld(wm).bind(mini_task)
    wm64 = WorldModel.from_preset("wan2.1-tiny", "nav3", image_size=[64, 64], clip_frames=9)
    with pytest.raises(ValueError, match="takes 64x64 frames"):
        CheckpointWorld(wm64).bind(mini_task)


def test_make_world_model_loads_a_checkpoint_and_records_its_sha256(tiny_wm, tmp_path):
    tiny_wm.save(tmp_path / "ckpt")
    world = make_world_model(str(tmp_path / "ckpt"))
    assert isinstance(world, CheckpointWorld)
    fp = world.fingerprint()
    files = (tmp_path / "ckpt" / "config.json", tmp_path / "ckpt" / "model.safetensors")
    assert fp["checkpoint_sha256"] == hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    with pytest.raises(ValueError, match="not 'none', 'oracle'"):
        make_world_model(str(tmp_path / "missing"))


def test_world_fingerprints_record_the_settings_as_saved_results_do(tiny_wm):
    """The world's `rollout` / `sampling` fingerprints come from their configs with the keys and order of saved
    results (the `rollout` of the demo's planning/action.json at 34eafe7; the guidance interval and compile only
    when set)."""
    world = CheckpointWorld(tiny_wm, RolloutConfig(steps=4, guidance=2.0, seed=9))
    saved = {"steps": 4, "sampler": "euler", "guidance": 2.0, "window": None}
    assert list(world.fingerprint()["rollout"].items()) == list(saved.items())
    interval = CheckpointWorld(tiny_wm, RolloutConfig(steps=4, guidance=2.0, guidance_interval=(0.2, 0.8)))
    assert list(interval.fingerprint()["rollout"].items()) == [*saved.items(), ("guidance_interval", [0.2, 0.8])]
    compiled = CheckpointWorld(tiny_wm, RolloutConfig(steps=4, guidance=2.0), compile=True).fingerprint()["rollout"]
    assert list(compiled.items()) == [*saved.items(), ("compile", True)]
    sampling = I2VConfig(steps=3, guidance=1.0, height=64, negative_prompt="blur", max_sequence_length=16)
    assert list(sampling.fingerprint().items()) == [
        ("steps", 3),
        ("guidance", 1.0),
        ("frames_per_action", 4),
        ("height", 64),
        ("width", None),
        ("negative_prompt", "blur"),
    ]


def _episode(task):
    return free_episode(task, scene=3, turns=2, forwards=2)
