"""Speed switches of TrainConfig reach what they switch and keep the seeded loss curve (float rounding only)."""

from __future__ import annotations

import re
import statistics

import pytest
import torch
from torch import nn

from actwm.models.world_model import WorldModel
from actwm.train import TrainConfig, train
from actwm.train.setup import apply_speed_switches
from actwm.train.trainer import Trainer
from tests.train.conftest import DictDataset


def _cfg(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(steps=4, batch_size=2, lr=1e-3, checkpoint_every=0, cpu=True, seed=2)
    return TrainConfig(out=str(tmp_path / name), **{**base, **kw})


def test_switches_keep_the_loss_curve(tmp_path):
    ds = DictDataset(n=4, frames=5, size=16)
    base = train(_cfg(tmp_path, "base"), dataset=ds, progress=False).losses
    for name, switch in {
        "foreach": dict(optimizer_impl="foreach"),
        "fused": dict(optimizer_impl="fused"),
        "math": dict(sdpa_backend="math"),
        "channels_last": dict(channels_last=True),
    }.items():
        losses = train(_cfg(tmp_path, name, **switch), dataset=ds, progress=False).losses
        assert losses == pytest.approx(base, rel=1e-4, abs=1e-5), name
        if name == "math":  # the forced kernel really ran: torch's CPU default (flash) rounds differently
            assert losses != base


def test_switches_reach_their_targets(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    trainer = Trainer(_cfg(tmp_path, "f", optimizer_impl="fused"), dataset=ds, progress=False)
    assert trainer.optimizer.optimizer.defaults["fused"] is True
    trainer = Trainer(_cfg(tmp_path, "c", channels_last=True), dataset=ds, progress=False)
    convs = [m for m in trainer.wm.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
    wm = WorldModel.from_preset("wan2.1-tiny", "custom3")
    keys = list(wm.state_dict())
    apply_speed_switches(wm, _cfg(tmp_path, "k", compile=True), torch.device("cpu"))
    assert wm.adapter.backbone._compiled_call_impl is not None and list(wm.state_dict()) == keys
    with pytest.raises(ValueError, match="sdpa_backend"):
        Trainer(_cfg(tmp_path, "e", sdpa_backend="efficient"), dataset=ds, progress=False)


def test_result_separates_the_first_step_from_the_steady_state(tmp_path):
    """TrainResult keeps each step's seconds of this call; the steady figure leaves out the first step (where
    compilation happens) and a resumed call reports only its own steps."""
    ds = DictDataset(n=4, frames=5, size=16)
    first = train(_cfg(tmp_path, "r", steps=4), dataset=ds, progress=False, stop_after=1)
    assert len(first.step_seconds) == 1 and first.steady_seconds_per_step == first.first_step_seconds
    res = train(_cfg(tmp_path, "r", steps=4, resume=True), dataset=ds, progress=False)
    assert len(res.step_seconds) == 3 and all(s > 0 for s in res.step_seconds)
    assert res.first_step_seconds == res.step_seconds[0]
    assert res.steady_seconds_per_step == statistics.median(res.step_seconds[1:])


def test_compile_keeps_the_loss_curve(tmp_path, monkeypatch):
    """`compile=True` trains the same model: the traced graph (dynamo + AOTAutograd; the `aot_eager` backend
    stands in for inductor's code generation, which takes minutes) sees the conditioning, action dropout and
    the adapter's hooks as eager training does."""
    ds = DictDataset(n=4, frames=5, size=16)
    cfg = dict(steps=3, action_dropout=0.5)
    base = train(_cfg(tmp_path, "eager", **cfg), dataset=ds, progress=False).losses
    compile_module = nn.Module.compile
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kw: compile_module(self, backend="aot_eager", **kw))
    trainer = Trainer(_cfg(tmp_path, "compiled", compile=True, **cfg), dataset=ds, progress=False)
    assert trainer.wm.adapter.backbone._compiled_call_impl is not None
    assert trainer.run().losses == pytest.approx(base, rel=1e-5, abs=1e-6)


def test_compile_without_a_cpp_compiler_trains_uncompiled(tmp_path, no_cpp_compiler):
    """inductor builds C++ kernels on CPU: without a compiler the switch warns and leaves the model eager."""
    wm = WorldModel.from_preset("wan2.1-tiny", "custom3")
    with pytest.warns(UserWarning, match="TrainConfig.compile: training runs uncompiled"):
        apply_speed_switches(wm, _cfg(tmp_path, "k", compile=True), torch.device("cpu"))
    assert wm.adapter.backbone._compiled_call_impl is None


SKIPPED = re.compile(r"attn2\.(to_q|to_k|norm_q|norm_k)\.|\.norm2\.")  # what only feeds the one-key query/key


def test_fast_paths_keep_the_loss_curve_and_every_update(tmp_path):
    """`fast_paths` on the tiny Wan preset (one empty-prompt context token): the same losses and parameters after
    seeded AdamW steps. The parameters that only feed the skipped cross-attention query/key get an exact zero
    gradient (not None), so AdamW's decoupled weight decay alone moves them; stock's get attention-backward rounding
    noise (~1e-10) that Adam's normalisation turns into small updates, so they are compared with the pure decay. The
    others agree to 1% of an lr step per step: Adam's normalisation also magnifies the float rounding of the
    gradients of elements whose gradient is near zero (~3e-6 here; the same holds for `compile` or `fused`)."""
    ds = DictDataset(n=4, frames=5, size=16)
    cfg = dict(weight_decay=1.0, schedule="constant", steps=3)  # decay x lr = 1e-3 per step
    params, losses = {}, {}
    for fast in (False, True):
        trainer = Trainer(_cfg(tmp_path, f"fast{fast}", fast_paths=fast, **cfg), dataset=ds, progress=False)
        assert trainer.wm.adapter.fast.training is fast
        init = {n: p.detach().clone() for n, p in trainer.wm.named_parameters()}
        losses[fast] = trainer.run().losses
        params[fast] = {n: p.detach() for n, p in trainer.wm.named_parameters()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-6, abs=1e-7)
    skipped = [n for n in params[True] if SKIPPED.search(n)]
    assert len(skipped) == 2 * 8  # 2 blocks x (to_q, to_k weight and bias, norm_q, norm_k, norm2 weight and bias)
    for name, fast in params[True].items():
        if name in skipped:
            torch.testing.assert_close(fast, init[name] * (1 - 1e-3) ** 3, rtol=0, atol=1e-7, msg=name)
        else:
            torch.testing.assert_close(fast, params[False][name], rtol=0, atol=3e-5, msg=name)


def test_fast_paths_need_a_wan_backbone(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    with pytest.raises(ValueError, match="TrainConfig.fast_paths"):
        Trainer(_cfg(tmp_path, "svd", model="svd-tiny", fast_paths=True), dataset=ds, progress=False)
