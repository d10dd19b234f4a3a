"""TrainConfig validation, presets, the CLI, and clear errors for incompatible inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actwm import cli as actwm_cli
from actwm.models.world_model import WorldModel
from actwm.train import TrainConfig, train
from actwm.train.cli import resolve_config
from tests.train.conftest import DictDataset


def main(argv: list[str]) -> int:
    """`actwm train ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["train", *argv])


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", -1.0),
        ("lr", 0.0),
        ("steps", 0),
        ("batch_size", 0),
        ("grad_accum", 0),
        ("train_mode", "half"),
        ("mixed_precision", "fp8"),
        ("distributed", "horovod"),
        ("action_dropout", 1.5),
        ("ema_decay", 1.0),
        ("schedule", "linear"),
        ("action_mode", "absolute"),
        ("normalise", "minmax"),
        ("warmup_steps", -1),
        ("model", "gpt-tiny"),
        ("keep_last", 0),
        ("size", 1),
        ("context", 0),
        ("horizon", -1),
        ("target_fps", 0.0),
        ("steps", "10"),
        ("passive", "yes"),
        ("betas", (0.9, 1.5)),
    ],
)
def test_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^TrainConfig\.{field}\b"):  # clip settings too (ClipConfig checks them)
        TrainConfig(**{field: value})


def test_roundtrip_and_presets():
    cfg = TrainConfig.preset(
        "tiny-cpu", data=Path("/d"), out="/o", ema_decay=0.99, model_overrides={"encoder": {"hidden_dim": 32}}
    )
    assert cfg.data == "/d"
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    svd, cosmos = TrainConfig.preset("svd-8gpu"), TrainConfig.preset("cosmos2-2b-8gpu")
    assert (svd.lr, svd.lr * svd.action_lr_mult) == (1e-5, pytest.approx(1e-4))  # EgoWM appendix B
    assert (cosmos.lr, cosmos.lr * cosmos.action_lr_mult) == (1e-6, pytest.approx(1e-5))
    assert cosmos.distributed == "fsdp" and cosmos.target_fps == 5.0 and cosmos.num_frames == 17
    with pytest.raises(ValueError, match="unknown train preset"):
        TrainConfig.preset("nope")
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({"learning_rate": 1})


def test_cli_overrides_every_field_kind(tmp_path):
    saved = tmp_path / "c.json"
    saved.write_text(json.dumps({"steps": 7, "lr": 0.5}))
    cfg, _ = resolve_config(
        [
            "--preset",
            "tiny-cpu",
            "--config",
            str(saved),
            "--data",
            "D",
            "--out",
            "O",
            "--lr",
            "3e-4",
            "--passive",
            "--ema-decay",
            "0.999",
            "--target-fps",
            "none",
            "--no-cpu",
            "--set",
            "grad_accum=3",
            "--set",
            'model_overrides={"encoder": {"hidden_dim": 16}}',
            "--set",
            "betas=0.8,0.9",
            "--mixed-precision",
            "bf16",
        ]
    )
    assert (cfg.data, cfg.out, cfg.steps, cfg.lr, cfg.passive, cfg.ema_decay) == ("D", "O", 7, 3e-4, True, 0.999)
    assert (cfg.target_fps, cfg.cpu, cfg.grad_accum, cfg.model_overrides, cfg.betas) == (
        None,
        False,
        3,
        {"encoder": {"hidden_dim": 16}},
        (0.8, 0.9),
    )
    assert cfg.size == 32 and cfg.mixed_precision == "bf16"  # from the preset / flag


def test_cli_errors_name_the_field(capsys):
    assert main(["--out", "O", "--batch-size", "two"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert main(["--out", "O", "--set", "warp=9"]) == 2
    assert "warp" in capsys.readouterr().err
    assert main(["--out", "O", "--print-config", "--steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert main(["--out", "O", "--data", "/does/not/exist"]) == 2
    assert "/does/not/exist" in capsys.readouterr().err


def test_init_from_other_backbone_or_action_space_is_refused(tmp_path):
    WorldModel.from_preset("cosmos-tiny", "nav3").save(tmp_path / "cosmos_nav3")
    ds = DictDataset(n=2, frames=5, size=16, action_space="nav3")
    cfg = TrainConfig(
        out=str(tmp_path / "o"),
        init_from=str(tmp_path / "cosmos_nav3"),
        model="wan2.1-tiny",
        steps=1,
        batch_size=2,
        cpu=True,
    )
    with pytest.raises(ValueError, match="backbone 'cosmos'.*expected 'wan2.1'"):
        train(cfg, dataset=ds, progress=False)
    ee7 = DictDataset(n=2, frames=5, size=16, dim=7, action_space="ee7")
    with pytest.raises(ValueError, match="action space 'nav3'.*expected 'ee7'"):
        train(cfg.replace(model="cosmos-tiny"), dataset=ee7, progress=False)


def test_incompatible_data_is_refused(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "o"), steps=1, batch_size=2, cpu=True, model="wan2.1-tiny")
    with pytest.raises(ValueError, match=r"1 \+ 4\*n"):
        train(cfg, dataset=DictDataset(n=2, frames=6, size=16), progress=False)
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3")
    with pytest.raises(ValueError, match="D=7"):
        train(cfg, model=wm, dataset=DictDataset(n=2, frames=5, size=16, dim=7), progress=False)
    with pytest.raises(ValueError, match="state"):
        train(cfg.replace(state_dim=9), dataset=DictDataset(n=2, frames=5, size=16, state=4), progress=False)
    bad = DictDataset(n=2, frames=5, size=16)
    bad.video = bad.video * 2 - 1  # already in [-1, 1]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(cfg, dataset=bad, progress=False)
    with pytest.raises(ValueError, match="TrainConfig.data"):
        train(cfg, progress=False)
    with pytest.raises(ValueError, match="fsdp"):
        train(cfg.replace(distributed="fsdp"), dataset=DictDataset(n=2, frames=5, size=16), progress=False)
    assert torch.get_num_threads() >= 1


def test_fast_paths_are_accepted_with_compile_in_every_precision():
    # the compiled bf16 NaN is fixed (wan_fast's token-major patch embedding; tests/models/test_wan_fast.py)
    for precision in ("no", "bf16"):
        assert TrainConfig(fast_paths=True, compile=True, mixed_precision=precision).fast_paths


@pytest.mark.parametrize("overrides", [{"hidden_dim": 32}, {"encoder": {"hidden_dim": 32}}])
def test_model_overrides_take_encoder_keys_flat_or_nested(overrides, tmp_path):
    """model_overrides update the preset's encoder settings key by key, beside TrainConfig.state_dim; a model
    loaded with init_from must have the state embedding TrainConfig.state_dim asks for."""
    from actwm.actions import get_action_space
    from actwm.train.setup import build_model

    cfg = TrainConfig(out=str(tmp_path / "o"), model="svd-tiny", state_dim=2, model_overrides=overrides)
    wm = build_model(cfg, get_action_space("nav3"))
    want = {"features": "sincos", "num_freqs": 8, "max_freq": 100.0, "hidden_dim": 32, "state_dim": 2}
    assert wm.config.encoder == want and wm.encoder.cfg.hidden_dim == 32 and wm.encoder.cfg.state_dim == 2
    wm.save(tmp_path / "init")
    with pytest.raises(ValueError, match=r"TrainConfig\.state_dim: 3 differs from the init_from model's state_dim 2"):
        build_model(cfg.replace(init_from=str(tmp_path / "init"), state_dim=3), get_action_space("nav3"))


@pytest.mark.parametrize(
    "overrides, unknown",
    [({"hiddn_dim": 3}, "['hiddn_dim']"), ({"encoder": {"hiden": 1}}, "['encoder.hiden']"), ({"encoder": 3}, None)],
)
def test_unknown_model_overrides_are_refused_when_the_config_is_built(overrides, unknown):
    """Before any data is read or model built: one line naming the field and the unknown keys."""
    with pytest.raises(ValueError, match=r"^TrainConfig\.model_overrides must be ") as err:
        TrainConfig(out="unused", model_overrides=overrides)
    assert unknown is None or f"(unknown: {unknown})" in str(err.value)
