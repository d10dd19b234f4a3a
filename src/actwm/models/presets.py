"""Named world-model presets: a tiny real-class config of every backbone variant (CPU tests, the demo) and the
real-size pretrained ones."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Callable

from torch import nn

from actwm.actions import ActionSpace, get_action_space
from actwm.models import cosmos, svd, wan
from actwm.models.codecs import PixelCodec
from actwm.models.config import WorldModelConfig, family_of, with_overrides


def _tiny(backbone: str) -> dict:
    # Pixel codecs mirror each real VAE's frame rule (k). Spatial factors keep a patch token (channels x patch
    # area) no wider than the tiny backbones' 64-d hidden state: a wider token makes the output projection a
    # low-rank bottleneck that cannot remove the noise (measured: samples stay noise at any training length).
    # wan2.2: Wan 2.2 TI2V's 2x2 spatial patch (diffusers' WanImageToVideoPipeline(expand_timesteps=True) assumes
    # it) on a 1x pixel codec: 12-channel latents, 48-d patch tokens, the same token grid as a 2x codec + 1x1 patch.
    spatial, temporal = {"svd": (2, 1), "cosmos": (1, 4), "wan2.1": (1, 4), "wan2.2": (1, 4)}[backbone]
    codec = {"kind": "pixel", "spatial": spatial, "temporal": temporal}
    channels = PixelCodec(codec["spatial"], codec["temporal"]).latent_channels
    if backbone == "svd":
        return dict(
            backbone_config=svd.tiny_config(channels),
            codec=codec,
            image_encoder={"kind": "tiny"},
            encoder={"features": "sincos", "hidden_dim": 64, "num_freqs": 8},
        )
    cfg = cosmos.tiny_config(channels) if backbone == "cosmos" else wan.tiny_config(channels)
    return dict(backbone_config=cfg, codec=codec, encoder={"features": "mlp", "hidden_dim": 64})


def _full(backbone: str) -> dict:
    if backbone == "svd":
        return dict(
            backbone_config=dict(svd.tiny_config(4), **_SVD_FULL),
            source=svd.HUB_ID,
            codec={"kind": "svd-vae", "source": svd.HUB_ID, "subfolder": "vae"},
            image_encoder={"source": svd.HUB_ID, "subfolder": "image_encoder"},
            encoder={"features": "sincos", "hidden_dim": 512, "num_freqs": 16},
        )
    if backbone == "cosmos":
        return _released_dit(cosmos.HUB_ID, cosmos.predict2_2b_config())
    cfg = wan.wan21_1_3b_config() if backbone == "wan2.1" else wan.wan22_ti2v_5b_config()
    return _released_dit(wan.HUB_IDS[backbone], cfg)


def _released_dit(hub: str, backbone_config: dict, **fields_: Any) -> dict:
    """A released Cosmos / Wan checkpoint: its transformer, the Wan VAE from the same hub repo, MLP action
    features 1024 wide."""
    codec = {"kind": "wan-vae", "source": hub, "subfolder": "vae"}
    encoder = {"features": "mlp", "hidden_dim": 1024}
    return dict(backbone_config=backbone_config, source=hub, encoder=encoder, codec=codec, **fields_)


def _tiny_i2v(backbone: str) -> dict:
    """Tiny Wan 2.1 I2V: channel-concat first frame (in = 2C + k), no CLIP branch."""
    codec = {"kind": "pixel", "spatial": 1, "temporal": 4}
    channels = PixelCodec(1, 4).latent_channels
    cfg = wan.tiny_config(channels, concat_mask=4)
    return dict(backbone_config=cfg, codec=codec, encoder={"features": "mlp", "hidden_dim": 64})


def _full_i2v(backbone: str) -> dict:
    hub = wan.HUB_IDS["wan2.1-i2v"]
    return _released_dit(
        hub,
        wan.wan21_i2v_14b_config(),
        image_encoder={"source": hub, "subfolder": "image_encoder"},
        text_tokens=wan.I2V_TEXT_TOKENS,
    )


# The SVD img2vid-xt UNet is the class's default config.
_SVD_FULL = dict(
    in_channels=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=25,
)

PRESETS: dict[str, tuple[str, Callable[[str], dict]]] = {
    "svd-tiny": ("svd", _tiny),
    "cosmos-tiny": ("cosmos", _tiny),
    "wan2.1-tiny": ("wan2.1", _tiny),
    "wan2.2-tiny": ("wan2.2", _tiny),
    "wan2.1-i2v-tiny": ("wan2.1", _tiny_i2v),
    "svd": ("svd", _full),
    "cosmos2-2b": ("cosmos", _full),
    "wan2.1-1.3b": ("wan2.1", _full),
    "wan2.2-ti2v-5b": ("wan2.2", _full),
    "wan2.1-i2v-14b": ("wan2.1", _full_i2v),
}
# The tiny preset of each backbone variant (tests and benchmarks parametrise over these).
TINY_PRESETS = {
    "svd": "svd-tiny",
    "cosmos": "cosmos-tiny",
    "wan2.1": "wan2.1-tiny",
    "wan2.2": "wan2.2-tiny",
    "wan2.1-i2v": "wan2.1-i2v-tiny",
}


def get_preset(name: str, action_space: str | int | ActionSpace = "nav3", **overrides: Any) -> WorldModelConfig:
    """A named preset (`svd-tiny`, `cosmos-tiny`, `wan2.1-tiny`, `wan2.2-tiny`, `wan2.1-i2v-tiny`, `svd`,
    `cosmos2-2b`, `wan2.1-1.3b`, `wan2.2-ti2v-5b`, `wan2.1-i2v-14b`; `tiny` alone means `wan2.1-tiny`) for an
    action space, with overrides (`with_overrides`: `encoder` updates the preset's settings key by key; flat
    encoder keys such as hidden_dim=128 are accepted)."""
    if name == "tiny":
        name = "wan2.1-tiny"
    if name not in PRESETS:
        raise ValueError(f"unknown world-model preset {name!r}; available: {', '.join(PRESETS)} (and 'tiny')")
    backbone, make = PRESETS[name]
    fields_ = dict(
        make(backbone), backbone=backbone, preset=name, action_space=get_action_space(action_space).to_dict()
    )
    fields_ = with_overrides(fields_, overrides)
    unknown = set(fields_) - {f.name for f in fields(WorldModelConfig)}
    if unknown:
        raise ValueError(f"unknown world-model config fields: {sorted(unknown)}")
    return WorldModelConfig(**fields_)


def pretrained_config(
    source: str, backbone: str, action_space: str | int | ActionSpace, model: nn.Module, overrides: dict
) -> WorldModelConfig:
    """The config of a pretrained pipeline directory / hub id: its family's real-size preset, sourced there."""
    family = family_of(backbone)
    base = get_preset(
        {"svd": "svd", "cosmos": "cosmos2-2b", "wan2.1": "wan2.1-1.3b", "wan2.2": "wan2.2-ti2v-5b"}[backbone],
        action_space,
    )
    fields_ = dict(
        asdict(base),
        source=source,
        preset=f"{backbone}@{source}",
        codec={"kind": "svd-vae" if family == "svd" else "wan-vae", "source": source, "subfolder": "vae"},
        image_encoder={"source": source, "subfolder": "image_encoder"} if family == "svd" else None,
    )
    if family == "wan" and model.config.get("image_dim") is not None:  # Wan 2.1 I2V: CLIP image cross-attention
        fields_.update(image_encoder={"source": source, "subfolder": "image_encoder"}, text_tokens=wan.I2V_TEXT_TOKENS)
    return WorldModelConfig(**with_overrides(fields_, overrides))
