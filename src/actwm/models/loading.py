"""Building a world model's parts (backbone class, codec, image encoder, adapter) and its checkpoint files.

A checkpoint is a directory with `model.safetensors` and `config.json`; config.json also records the sha256 of
the weights file (`weights_sha256`), verified at load, so a corrupted or swapped weights file is an error naming
the file instead of black frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from actwm.io import atomic_path, atomic_write_json, file_sha256, read_json
from actwm.models import cosmos, svd, wan
from actwm.models.base import BackboneAdapter
from actwm.models.codecs import Codec, PixelCodec, SVDVaeCodec, WanVaeCodec
from actwm.models.config import CONFIG_NAME, WEIGHTS_NAME, WorldModelConfig


def backbone_class(family: str):
    from diffusers import CosmosTransformer3DModel, UNetSpatioTemporalConditionModel, WanTransformer3DModel

    return {"svd": UNetSpatioTemporalConditionModel, "cosmos": CosmosTransformer3DModel, "wan": WanTransformer3DModel}[
        family
    ]


def subfolder_of(family: str) -> str:
    return "unet" if family == "svd" else "transformer"


def _is_local(source: str) -> bool:
    """A path (absolute, relative with ./ or ../, ~, or existing on disk) rather than an `org/name` hub id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def load_pretrained_component(cls: Any, source: str, subfolder: str | None, what: str, **kwargs: Any) -> nn.Module:
    """`cls.from_pretrained(source, subfolder=...)` with clear errors for missing local dirs and offline hubs."""
    if _is_local(source):
        root = Path(source).expanduser()
        folder = root / subfolder if subfolder else root
        if not folder.is_dir():
            raise ValueError(
                f"{what}: local weights directory {folder} does not exist; provide a diffusers-format directory "
                f"holding {subfolder + '/' if subfolder else ''}config.json and its safetensors weights"
            )
        return cls.from_pretrained(str(root), subfolder=subfolder, **kwargs)
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{what}: could not load {source!r}{' (subfolder ' + subfolder + ')' if subfolder else ''} from the hub "
            f"or its cache ({type(exc).__name__}). Download it (e.g. `huggingface-cli download {source}`) and pass "
            f"the local directory instead."
        ) from exc


def build_codec(spec: dict, dtype: torch.dtype | None = None) -> Codec:
    kind = spec["kind"]
    if kind == "pixel":
        return PixelCodec(spec.get("spatial", 4), spec.get("temporal", 1))
    from diffusers import AutoencoderKLTemporalDecoder, AutoencoderKLWan

    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    if kind == "svd-vae":
        vae = load_pretrained_component(
            AutoencoderKLTemporalDecoder, spec["source"], spec.get("subfolder"), "SVD VAE", **kwargs
        )
        return SVDVaeCodec(vae.requires_grad_(False).eval())
    vae = load_pretrained_component(AutoencoderKLWan, spec["source"], spec.get("subfolder"), "Wan VAE", **kwargs)
    return WanVaeCodec(vae.requires_grad_(False).eval(), sigma_data=float(spec.get("sigma_data", 1.0)))


def build_image_encoder(spec: dict | None, dtype: torch.dtype | None, family: str = "svd") -> nn.Module | None:
    """SVD: `CLIPVisionModelWithProjection` (image embeds); Wan I2V: `CLIPVisionModel` (hidden states)."""
    if spec is None:
        return None
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    cls = CLIPVisionModel if family == "wan" else CLIPVisionModelWithProjection
    if spec.get("kind") == "tiny":
        torch.manual_seed(0)  # the frozen tiny tower is part of the saved weights anyway
        return cls(CLIPVisionConfig(**svd.tiny_image_encoder_config()))
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    return load_pretrained_component(cls, spec["source"], spec.get("subfolder"), f"{family} image encoder", **kwargs)


def make_adapter(cfg: WorldModelConfig, backbone: nn.Module, codec: Codec | None, image_encoder) -> BackboneAdapter:
    if cfg.family == "svd":
        cond_scale = 1.0 / codec.scaling if isinstance(codec, SVDVaeCodec) else 1.0
        return svd.SVDAdapter(backbone, image_encoder=image_encoder, cond_scale=cond_scale)
    if cfg.family == "cosmos":
        return cosmos.CosmosAdapter(backbone, text_tokens=cfg.text_tokens)
    return wan.WanAdapter(backbone, text_tokens=cfg.text_tokens, image_encoder=image_encoder)


def write_checkpoint(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write `model.safetensors` then `config.json` (with the weights' sha256), each atomically.

    Args:
        tensors: name -> tensor (made contiguous and moved to CPU here).
        config: `WorldModelConfig.to_dict()`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        # one metadata key: safetensors writes metadata in hash-map order, so with two keys the same weights gave
        # different bytes (and `weights_sha256`, and the checkpoint fingerprint) from save to save
        save_file(state, str(tmp), metadata={"format": "pt"})
        digest = file_sha256(tmp)
    atomic_write_json(directory / CONFIG_NAME, {**config, "weights_sha256": digest})
    return directory


def read_checkpoint_config(directory: str | os.PathLike) -> tuple[WorldModelConfig, str | None]:
    """`(config, recorded weights sha256 or None)` of a checkpoint directory; errors name what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: world-model checkpoint directory does not exist")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise ValueError(f"{directory}: not a world-model checkpoint (missing {name})")
    raw = read_json(directory / CONFIG_NAME)
    if not isinstance(raw, dict):
        raise ValueError(f"{directory / CONFIG_NAME}: not a world-model config (a JSON object expected)")
    try:
        cfg = WorldModelConfig.from_dict(raw)
    except TypeError as exc:  # a missing required field
        raise ValueError(f"{directory / CONFIG_NAME}: not a valid world-model config ({exc})") from exc
    return cfg, raw.get("weights_sha256")


def read_weights(path: str | os.PathLike, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file, verifying its sha256 when one was recorded; errors name the file."""
    path = Path(path)
    if sha256 is not None and file_sha256(path) != sha256:
        raise ValueError(
            f"{path}: weights are corrupted or were replaced (sha256 differs from the one recorded in "
            f"{CONFIG_NAME} at save)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
