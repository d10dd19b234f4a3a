"""WorldModelConfig.encoder: the action encoder's settings in one nested field, validated at construction, and
the flat layout of older config.json files (and of flat overrides) moved into it."""

import json

import pytest
import torch

from actwm.models.config import WorldModelConfig
from actwm.models.world_model import WorldModel, get_preset

# The five flat fields config.json held before `encoder`, with WorldModelConfig's defaults then.
OLD_DEFAULTS = {"features": "sincos", "hidden_dim": 256, "num_freqs": 16, "max_freq": 100.0, "state_dim": 0}


def tiny(**encoder):
    return get_preset("wan2.1-tiny", encoder=encoder)


def test_empty_encoder_means_the_old_defaults():
    fields = {k: v for k, v in tiny().to_dict().items() if k != "encoder"}
    assert WorldModelConfig(**fields).encoder == OLD_DEFAULTS
    assert WorldModelConfig(**fields, encoder={"hidden_dim": 32}).encoder == dict(OLD_DEFAULTS, hidden_dim=32)


@pytest.mark.parametrize(
    "encoder, message",
    [
        ({"hiddn_dim": 32}, r"^WorldModelConfig\.encoder must be .*unknown keys \['hiddn_dim'\]$"),
        ({"action_dim": 3}, r"^WorldModelConfig\.encoder must be .*unknown keys \['action_dim'\]$"),  # derived
        ({"hidden_dim": 0}, r"^WorldModelConfig\.encoder\.hidden_dim must be >= 1, got 0$"),
        ({"features": "fourier"}, r"^WorldModelConfig\.encoder\.features must be one of"),
        ({"state_dim": -1}, r"^WorldModelConfig\.encoder\.state_dim must be >= 0, got -1$"),
        ("sincos", r"^WorldModelConfig\.encoder must be a dict"),
    ],
)
def test_bad_encoder_settings_fail_at_construction(encoder, message):
    fields = {k: v for k, v in tiny().to_dict().items() if k != "encoder"}
    with pytest.raises(ValueError, match=message):
        WorldModelConfig(**fields, encoder=encoder)


def test_from_dict_moves_the_flat_layout_into_encoder():
    old = {k: v for k, v in tiny().to_dict().items() if k != "encoder"}  # config.json before `encoder`:
    old.update(features="mlp", hidden_dim=32, num_freqs=16, max_freq=100.0, state_dim=2, weights_sha256="0" * 64)
    cfg = WorldModelConfig.from_dict(old)
    assert cfg.encoder == {"features": "mlp", "num_freqs": 16, "max_freq": 100.0, "hidden_dim": 32, "state_dim": 2}
    assert cfg.to_dict() == tiny(hidden_dim=32, state_dim=2).to_dict()
    assert not {"features", "hidden_dim", "num_freqs", "max_freq", "state_dim"} & set(cfg.to_dict())
    partial = {k: v for k, v in old.items() if k not in ("features", "num_freqs", "max_freq", "state_dim")}
    assert WorldModelConfig.from_dict(partial).encoder == dict(OLD_DEFAULTS, hidden_dim=32)


def test_a_key_both_flat_and_nested_must_agree():
    new = tiny(hidden_dim=32).to_dict()
    assert WorldModelConfig.from_dict(dict(new, hidden_dim=32)).to_dict() == new
    with pytest.raises(ValueError, match=r"^WorldModelConfig\.encoder: .*'hidden_dim': \(64, 32\)"):
        WorldModelConfig.from_dict(dict(new, hidden_dim=64))


def test_overrides_update_the_presets_encoder_key_by_key():
    svd = get_preset("svd-tiny").encoder
    assert svd == {"features": "sincos", "num_freqs": 8, "max_freq": 100.0, "hidden_dim": 64, "state_dim": 0}
    nested = get_preset("svd-tiny", encoder={"hidden_dim": 32})
    assert nested.encoder == dict(svd, hidden_dim=32)
    assert get_preset("svd-tiny", hidden_dim=32) == nested  # the flat spelling means the same
    with pytest.raises(ValueError, match="unknown world-model config fields"):
        get_preset("svd-tiny", hiden_dim=32)


@pytest.mark.parametrize(
    "encoder", [{"hidden_dim": 32}, {"features": "sincos", "num_freqs": 4}, {"max_freq": 7.0}, {"state_dim": 3}]
)
def test_every_encoder_setting_reaches_the_model(encoder):
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3", encoder=encoder)
    assert {k: getattr(wm.encoder.cfg, k) for k in encoder} == encoder
    assert (wm.encoder.cfg.action_dim, wm.encoder.cfg.temporal_compression) == (3, 4)  # derived


def old_layout(directory):
    """Rewrite a checkpoint's config.json in the flat layout of files saved before `encoder`."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(config.pop("encoder"))
    path.write_text(json.dumps(config))
    return config


def test_a_checkpoint_in_the_old_layout_loads_with_the_same_weights_and_outputs(tmp_path):
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3", encoder={"hidden_dim": 32, "state_dim": 2}).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in wm.encoder.parameters():  # the output layer starts at zero: make the actions and state count
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    wm.save(tmp_path / "ckpt")
    old = old_layout(tmp_path / "ckpt")
    assert old["hidden_dim"] == 32 and "encoder" not in old
    loaded = WorldModel.load(tmp_path / "ckpt").eval()
    assert loaded.config.to_dict() == wm.config.to_dict()
    assert wm.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in wm.state_dict().items())
    video = torch.rand(2, 5, 3, 16, 16, generator=g) * 2 - 1
    actions, state = torch.randn(2, 5, 3, generator=g), torch.randn(2, 2, generator=g)
    with torch.no_grad():
        losses = [m.loss(video, actions, state, generator=torch.Generator().manual_seed(0)) for m in (wm, loaded)]
    assert torch.equal(*losses)


@pytest.mark.parametrize(
    "kvaf, message",
    [({"layrs": [0]}, r"^WorldModelConfig\.kvaf has unknown keys \['layrs'\]"), ({"every": 0}, r"every")],
)
def test_bad_kvaf_settings_fail_at_construction_too(kvaf, message):
    fields = {k: v for k, v in tiny().to_dict().items() if k != "kvaf"}
    with pytest.raises(ValueError, match=message):
        WorldModelConfig(**fields, kvaf=kvaf)
