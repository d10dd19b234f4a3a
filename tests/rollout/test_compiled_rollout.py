"""`RolloutConfig.compile` (`actwm rollout --compile`, `CheckpointWorld(compile=True)`): the backbone compiled in place,
the same frames as eager to float rounding; without a C++ compiler a warning and eager sampling."""

import json

import numpy as np
import pytest
import torch

from actwm.models.compiling import cpu_compiler_missing
from actwm.planning.worlds import CheckpointWorld
from actwm.rollout.rollout import RolloutConfig, rollout
from tests.rollout.test_rollout import _actions, _cli_base, main, tiny_nav_model


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.randn(2, 13, 3, generator=g) * 0.1


@pytest.mark.skipif(cpu_compiler_missing() is not None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_rollout_matches_eager():
    torch._dynamo.reset()
    wm = tiny_nav_model()
    first, raw = _inputs()
    cfg = RolloutConfig(steps=3, guidance=2.0, guidance_interval=(0.3, 1.0))  # guided and unguided levels, 2 chunks
    eager = rollout(wm, first, raw, cfg=cfg)
    assert wm.adapter.backbone._compiled_call_impl is None
    compiled = rollout(wm, first, raw, cfg=RolloutConfig(**{**cfg.__dict__, "compile": True}))
    assert wm.adapter.backbone._compiled_call_impl is not None  # compiled in place, and it stays so
    assert (eager[:, 1:] - first).abs().max() > 0.1  # the frames are generated, not copied
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_without_a_cpp_compiler_sampling_warns_and_runs_eagerly(no_cpp_compiler):
    wm = tiny_nav_model()
    first, raw = _inputs()
    eager = rollout(wm, first, raw, cfg=RolloutConfig(steps=2))
    with pytest.warns(UserWarning, match="RolloutConfig.compile: sampling runs uncompiled"):
        out = rollout(wm, first, raw, cfg=RolloutConfig(steps=2, compile=True))
    assert wm.adapter.backbone._compiled_call_impl is None
    torch.testing.assert_close(out, eager, rtol=0, atol=0)


def test_checkpoint_world_compile_switch_reaches_the_rollout():
    wm = tiny_nav_model()
    world = CheckpointWorld(wm, RolloutConfig(steps=4), compile=True)
    assert world.rollout_cfg.compile and world.rollout_cfg.steps == 4
    assert world.fingerprint()["rollout"]["compile"] is True
    plain = CheckpointWorld(wm, RolloutConfig(steps=4))
    assert not plain.rollout_cfg.compile and "compile" not in plain.fingerprint()["rollout"]


def test_cli_compile_flag_reaches_the_sampler_and_the_record(tmp_path, no_cpp_compiler):  # warns: asked for
    ckpt = tiny_nav_model().save(tmp_path / "ckpt")
    np.save(tmp_path / "acts.npy", _actions(1, 5).numpy())
    args = _cli_base(ckpt, tmp_path) + ["--actions", str(tmp_path / "acts.npy"), "--out", str(tmp_path / "out")]
    with pytest.warns(UserWarning, match="RolloutConfig.compile: sampling runs uncompiled"):
        assert main(args + ["--compile"]) == 0
    assert json.loads((tmp_path / "out" / "rollout.json").read_text())["compile"] is True
