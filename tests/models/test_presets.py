"""Every world-model preset's config, as config.json saves it, is the one the presets held at 34eafe7 (written in
that commit's layout: the action-encoder settings as flat fields, nested as `encoder` since)."""

from __future__ import annotations

import hashlib
import json

from actwm.models.config import WorldModelConfig
from actwm.models.presets import PRESETS, get_preset

# The flat action-encoder fields of config.json at 34eafe7, in their order there.
FLAT_ENCODER_KEYS = ("features", "hidden_dim", "num_freqs", "max_freq", "state_dim")

# sha256 of `json.dumps(get_preset(name).to_dict())` at 34eafe7: the exact text of the config fields, key order
# included, which `checkpoint_sha256` hashes (config.json is written without sorting its keys).
CONFIG_SHA256 = {
    "svd-tiny": "be99d4f5a5654b3130fca17009b632bd25af20967b48d91d400cafea5078e8a0",
    "cosmos-tiny": "492fd5eec8acf3fd7809e6d5f24941e64f80be0a07b987db329f7790172d6330",
    "wan2.1-tiny": "f76a87b477901c03c3c0b453bbda0ce6a64736d5f071832999ed6a7bc52d53f2",
    "wan2.2-tiny": "522c45d97e66d465a1251db2c0f1ee9a0add0661d7d29e62acf87e12420faefc",
    "wan2.1-i2v-tiny": "d527b566e690e04e5cd621dd6c12ff59083eb5522d4b7bd65c09cb5c4ce6b50a",
    "svd": "bf2995aa82a12ac8d9aa1b3366634d1fa61e52c5983ac57cc588927b38f19f3b",
    "cosmos2-2b": "30b2927e652c276716b35e846077b4e112c8883f2d7ba65f8dcbf658cd0d4755",
    "wan2.1-1.3b": "1d115e9a78a6f8eae30387ac8559adc865d2eec55e1abfa64aec892f3c31b5fc",
    "wan2.2-ti2v-5b": "663d9e29059d6e89a7c1dfd316de26ee04f07574f7f972f4a4e795eb45772c11",
    "wan2.1-i2v-14b": "192b01bd4478bee57bf50ff9d6df3b17fb631efd1318e5765b0072f0d4f9b190",
}


def flat_layout(config: dict) -> dict:
    """`config` (a `to_dict()`) in 34eafe7's layout: `encoder` spelled out as flat fields in its place."""
    out: dict = {}
    for key, value in config.items():
        out.update({k: value[k] for k in FLAT_ENCODER_KEYS} if key == "encoder" else {key: value})
    return out


def test_every_preset_config_is_unchanged():
    assert list(PRESETS) == list(CONFIG_SHA256)
    changed = {
        name: get_preset(name).to_dict()
        for name, digest in CONFIG_SHA256.items()
        if hashlib.sha256(json.dumps(flat_layout(get_preset(name).to_dict())).encode()).hexdigest() != digest
    }
    assert not changed, f"preset configs differ from 34eafe7's: {changed}"


def test_every_preset_config_reads_back_from_the_flat_layout():
    for name in PRESETS:
        config = get_preset(name).to_dict()
        assert WorldModelConfig.from_dict(flat_layout(config)).to_dict() == config, name
