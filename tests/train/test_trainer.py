"""The training engine on tiny real backbones: learning, parameter groups, train modes, resume, EMA."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file

from actwm.models.world_model import TINY_PRESETS, WorldModel
from actwm.train import TrainConfig, train
from actwm.train import checkpoint as ckpt
from actwm.train.trainer import StepIndexer, Trainer, build_optimizer, lr_factor
from tests.conftest import BACKBONES
from tests.train.conftest import DictDataset


def cfg_for(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), steps=4, batch_size=2, lr=1e-3, checkpoint_every=0, log_every=1, cpu=True)
    return TrainConfig(**{**base, **kw})


def fixed_loss(wm: WorldModel, ds: DictDataset) -> float:
    """Loss on the whole (fixed) dataset with fixed noise draws."""
    video, actions = ds.video * 2 - 1, ds.actions
    with torch.no_grad():
        return sum(float(wm.loss(video, actions, generator=torch.Generator().manual_seed(k))) for k in range(4)) / 4


@pytest.mark.parametrize("backbone", BACKBONES)
def test_training_reduces_loss_on_fixed_batch(tmp_path, backbone):
    ds = DictDataset(n=2, frames=5, size=16)
    torch.manual_seed(0)
    wm = WorldModel.from_preset(TINY_PRESETS[backbone], "custom3")
    before = fixed_loss(wm, ds)
    steps = 20 if backbone == "svd" else 30
    result = train(cfg_for(tmp_path, steps=steps, schedule="constant"), model=wm, dataset=ds, progress=False)
    after = fixed_loss(wm, ds)
    assert len(result.losses) == steps and all(torch.isfinite(torch.tensor(result.losses)))
    assert after < 0.85 * before, (before, after)
    loaded = WorldModel.load(result.final_dir)  # the saved final model is the trained one
    assert fixed_loss(loaded, ds) == pytest.approx(after, rel=1e-5)


def test_param_groups_action_at_ten_x(tmp_path):
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3")
    cfg = cfg_for(tmp_path, lr=2e-4, warmup_steps=0, schedule="constant")
    opt, _ = build_optimizer(wm, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(2e-4)
    assert groups["action"]["lr"] == pytest.approx(2e-3)
    action_ids = {id(p) for p in wm.action_parameters()}
    assert {id(p) for p in groups["action"]["params"]} == action_ids
    trainable = {id(p) for p in wm.parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    svd = WorldModel.from_preset("svd-tiny", "nav3", train_mode="frozen")
    opt, _ = build_optimizer(svd, cfg_for(tmp_path, lr=1e-5, action_lr_mult=10.0))
    assert [g["name"] for g in opt.param_groups] == ["action"] and opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_schedule_warmup_then_cosine(tmp_path):
    cfg = cfg_for(tmp_path, steps=10, warmup_steps=4, min_lr_ratio=0.1)
    f = [lr_factor(s, cfg) for s in range(10)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(f[3:], f[4:])) and f[-1] >= 0.1 and f[-1] < 0.2


def _changed(before: dict, wm: WorldModel) -> set[str]:
    after = wm.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_train_modes_update_only_their_parameters(tmp_path, mode):
    ds = DictDataset(n=2, frames=5, size=16)
    cfg = cfg_for(tmp_path, steps=2, train_mode=mode, lora_rank=4, lr=1e-2, weight_decay=0.1)
    trainer = Trainer(cfg, dataset=ds, progress=False)
    wm = trainer.wm
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    trainer.run()
    changed = _changed(before, wm)
    encoder = {k for k in changed if k.startswith("encoder.")}
    assert encoder, "the action encoder must train"
    others = changed - encoder
    if mode == "frozen":
        assert others == set()
    else:
        assert others and all("lora_" in k for k in others), sorted(others)[:5]


def test_lora_added_to_a_full_checkpoint(tmp_path):
    """init_from a full-mode model with train_mode=lora: base weights kept, only LoRA + encoder train."""
    src = WorldModel.from_preset("cosmos-tiny", "custom3")
    src.save(tmp_path / "base")
    ds = DictDataset(n=2, frames=5, size=16)
    cfg = cfg_for(
        tmp_path, model="cosmos-tiny", init_from=str(tmp_path / "base"), train_mode="lora", lora_rank=2, steps=1
    )
    trainer = Trainer(cfg, dataset=ds, progress=False)
    base = src.state_dict()
    for key, value in trainer.wm.state_dict().items():
        plain = key.replace(".base_layer.", ".")
        if "lora_" not in key:
            assert torch.equal(value, base[plain]), key
    result = trainer.run()
    loaded = WorldModel.load(result.final_dir)
    assert loaded.config.train_mode == "lora"


def test_passive_stage_trains_bare_backbone_only(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    trainer = Trainer(cfg_for(tmp_path, passive=True, steps=2), dataset=ds, progress=False)
    before = {k: v.clone() for k, v in trainer.wm.state_dict().items()}
    trainer.run()
    changed = _changed(before, trainer.wm)
    assert changed and not any(k.startswith("encoder.") for k in changed)
    assert trainer.action_dropout == 1.0


def test_stateless_data_order_covers_each_epoch_and_splits_ranks():
    idx = StepIndexer(n=10, seed=3, batch_size=2, grad_accum=1, world=2)
    epoch0 = [i for s in range(3) for r in range(2) for i in idx.indices(s, 0, r)][:10]
    assert sorted(epoch0) == list(range(10))
    assert set(idx.indices(0, 0, 0)).isdisjoint(idx.indices(0, 0, 1))
    again = StepIndexer(n=10, seed=3, batch_size=2, grad_accum=1, world=2)
    assert again.indices(7, 0, 1) == idx.indices(7, 0, 1)  # depends on (seed, step, rank) only


def test_resume_repeats_uninterrupted_run_exactly(tmp_path):
    ds = DictDataset(n=5, frames=5, size=16)
    kw = dict(steps=6, checkpoint_every=2, keep_last=2, warmup_steps=2, grad_accum=2, ema_decay=0.9, lr=1e-3)
    full = train(cfg_for(tmp_path / "a", **kw), dataset=ds, progress=False)
    part = train(cfg_for(tmp_path / "b", **kw), dataset=ds, progress=False, stop_after=3)
    assert part.steps == 3 and part.losses == full.losses[:3]
    with pytest.raises(ValueError, match="resume"):
        train(cfg_for(tmp_path / "b", **kw), dataset=ds, progress=False)
    resumed = train(cfg_for(tmp_path / "b", resume=True, **kw), dataset=ds, progress=False)
    assert resumed.start_step == 3
    assert resumed.losses == full.losses  # exact float equality
    a, b = load_file(str(full.final_dir / "model.safetensors")), load_file(str(resumed.final_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "b" / "run")]
    assert names == ["step-0000004", "step-0000006"]  # keep_last=2
    assert (tmp_path / "b" / "run" / "checkpoints" / "latest").read_text().strip() == "step-0000006"
    with open(tmp_path / "b" / "run" / "metrics.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_ema_weights_saved_as_final_and_in_checkpoint(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    trainer = Trainer(cfg_for(tmp_path, steps=3, ema_decay=0.5, checkpoint_every=3), dataset=ds, progress=False)
    result = trainer.run()
    final = load_file(str(result.final_dir / "model.safetensors"))
    live = {k: v for k, v in trainer.wm.state_dict().items()}
    shadow = trainer.ema.shadow
    name = next(iter(shadow))
    assert torch.equal(final[name], shadow[name]) and not torch.equal(final[name], live[name])
    state = ckpt.load_train_state(ckpt.find_latest(tmp_path / "run"))
    assert torch.equal(state["ema"]["shadow"][name], shadow[name]) and state["step"] == 3


def test_clip_dataset_store_end_to_end(tmp_path, store):
    """Builds ClipDataset from cfg.data and the model from the preset with the data's action statistics."""
    cfg = cfg_for(tmp_path, data=str(store), model="wan2.1-tiny", context=1, horizon=4, size=16, steps=2, state_dim=2)
    result = train(cfg, progress=False)
    wm = WorldModel.load(result.final_dir)
    assert wm.action_space.name == "nav3" and wm.config.encoder["state_dim"] == 2
    # what rollouts need to know about the training clips travels in the model config
    assert (wm.config.image_size, wm.config.clip_frames, wm.config.fps, wm.config.action_mode) == (
        [16, 16],
        5,
        5.0,
        "delta",
    )
    from actwm.data.clips import ClipDataset

    ds = ClipDataset(store, context=1, horizon=4, size=16)
    assert torch.allclose(torch.tensor(wm.action_space.std, dtype=torch.float64), torch.from_numpy(ds.action_std))
    saved = TrainConfig.from_dict(ckpt.read_json_safe(result.final_dir / "train_config.json"))
    assert saved == cfg


def test_bf16_autocast_on_cpu(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    result = train(cfg_for(tmp_path, steps=2, mixed_precision="bf16"), dataset=ds, progress=False)
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_model_stats_come_from_the_dataset_normaliser(tmp_path):
    """The model's action statistics are read from the dataset's normaliser object."""
    from actwm.actions import ActionNormaliser

    ds = DictDataset(n=2, frames=5, size=16, action_space="nav3")
    ds.normaliser = ActionNormaliser("std", "delta", (0.1, -0.2, 0.3), (2.0, 0.5, 1.5))
    trainer = Trainer(cfg_for(tmp_path, steps=1), dataset=ds, progress=False)
    assert trainer.wm.action_space.name == "nav3"
    assert list(trainer.wm.action_space.mean) == pytest.approx([0.1, -0.2, 0.3])
    assert list(trainer.wm.action_space.std) == pytest.approx([2.0, 0.5, 1.5])
    ds.normaliser = ActionNormaliser("none", "delta", (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="normaliser"):
        Trainer(cfg_for(tmp_path / "b", steps=1), dataset=ds, progress=False)
    ds.normaliser = ActionNormaliser.build("nwm", "delta", 3, metric_spacing=0.25)  # NWM's delta: row-0 offset
    with pytest.raises(ValueError, match="row-0 offset"):
        Trainer(cfg_for(tmp_path / "c", steps=1), dataset=ds, progress=False)


def test_resume_with_a_new_lr_trains_at_it_and_says_so(tmp_path):
    """The checkpoint's optimizer/scheduler state must not silently keep the old lr (or weight decay)."""
    ds = DictDataset(n=4, frames=5, size=16)
    kw = dict(steps=4, checkpoint_every=2, warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    train(cfg_for(tmp_path, lr=1e-3, weight_decay=0.0, **kw), dataset=ds, progress=False, stop_after=2)
    new = cfg_for(tmp_path, resume=True, lr=2e-4, action_lr_mult=5.0, weight_decay=0.05, **kw)
    with pytest.warns(UserWarning, match=r"changed settings \['lr', 'action_lr_mult', 'weight_decay'\]"):
        trainer = Trainer(new, dataset=ds, progress=False)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    factor = lr_factor(2, new)  # the schedule at the resumed step
    assert groups["backbone"]["lr"] == pytest.approx(2e-4 * factor)
    assert groups["action"]["lr"] == pytest.approx(2e-4 * 5.0 * factor)
    assert all(g["weight_decay"] == 0.05 for g in groups.values())
    trainer.run()
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(2e-4 * lr_factor(4, new))
