"""The action-conditioned world model: codec + backbone adapter + action encoder + objective.

One contract for every backbone:

    wm(noisy (batch, latent_frames, C, h, w), t (batch,), cond, actions (batch, frames, D),
       state (batch, S) | None) -> raw output (batch, latent_frames, C, h, w)

where `cond = wm.condition(first_frame)` and `actions` are *normalised* by the model's `ActionSpace`
(`wm.action_space.normalise(raw)`); row t of `actions` conditions pixel frame t. Configs are typed
dataclasses with named presets; `save`/`load` write safetensors + the config as JSON.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from actwm.actions import ActionSpace, get_action_space
from actwm.io import atomic_path, atomic_write_json, read_json
from actwm.models import cosmos, svd, wan
from actwm.models.base import BackboneAdapter, Condition
from actwm.models.codecs import Codec, PixelCodec, SVDVaeCodec, WanVaeCodec
from actwm.models.embeddings import ActionEncoder, ActionEncoderConfig, count_parameters
from actwm.models.objectives import get_sampler, make_objective

BACKBONES = ("svd", "cosmos", "wan2.1", "wan2.2")
TRAIN_MODES = ("full", "lora", "frozen")
LORA_TARGETS = {
    "svd": ["to_q", "to_k", "to_v", "to_out.0"],
    "cosmos": ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"],
    "wan": ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"],
}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def family_of(backbone: str) -> str:
    return "wan" if backbone.startswith("wan") else backbone


@dataclass
class WorldModelConfig:
    """Everything needed to rebuild a world model. Saved as `config.json` beside every checkpoint.

    Attributes:
        backbone: "svd", "cosmos", "wan2.1" or "wan2.2".
        preset: the preset name it came from (informational).
        action_space: `ActionSpace.to_dict()` of the embodiment.
        backbone_config: diffusers config kwargs of the backbone class.
        codec: {"kind": "pixel", "spatial": s, "temporal": k} or {"kind": "svd-vae"|"wan-vae", "source": hub id
            or local dir, "subfolder": "vae"}.
        source: hub id or local directory the pretrained backbone came from (None: built from config).
        image_encoder: SVD (CLIP image embeds; None = learned null context) and Wan 2.1 I2V (CLIP hidden states):
            None, {"kind": "tiny"} or {"source": ..., "subfolder": ...}.
        features: action features, "sincos" (SVD variant) or "mlp" (Cosmos variant).
        hidden_dim, num_freqs, max_freq: action encoder sizes.
        state_dim: size of the initial-state embedding (0 = off).
        train_mode: "full", "lora" or "frozen" (frozen: only the action encoder trains).
        lora_rank, lora_alpha: LoRA settings when train_mode == "lora".
        text_tokens: length of the fixed cross-attention context (Cosmos, Wan).
        objective: overrides of the objective's fields (e.g. {"shift": 1.0}).
        action_mode: what action row t means in training data: "delta" (motion from frame t to t+1) or
            "cumulative" (pose of frame t relative to frame 0, as EgoWM). Rollouts convert raw deltas to it.
        image_size: (height, width) in pixels the model was trained at (None: any size the codec accepts).
        fps: frame rate of the training clips (informational; rollouts write videos at it).
        clip_frames: pixel frames per training clip = the generation window of one chunk (None: 1 + 2k, min 9).
    """

    backbone: str
    action_space: dict
    backbone_config: dict
    codec: dict
    preset: str = "custom"
    source: str | None = None
    image_encoder: dict | None = None
    features: str = "sincos"
    hidden_dim: int = 256
    num_freqs: int = 16
    max_freq: float = 100.0
    state_dim: int = 0
    train_mode: str = "full"
    lora_rank: int = 16
    lora_alpha: float = 16.0
    text_tokens: int = 1
    objective: dict = field(default_factory=dict)
    action_mode: str = "delta"
    image_size: list[int] | None = None
    fps: float | None = None
    clip_frames: int | None = None

    def __post_init__(self) -> None:
        if self.action_mode not in ("delta", "cumulative"):
            raise ValueError(f"WorldModelConfig.action_mode must be 'delta' or 'cumulative', got {self.action_mode!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"WorldModelConfig.image_size must be [height, width], got {self.image_size}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"WorldModelConfig.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"WorldModelConfig.train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}")
        if self.codec.get("kind") not in ("pixel", "svd-vae", "wan-vae"):
            raise ValueError(f"WorldModelConfig.codec.kind must be 'pixel', 'svd-vae' or 'wan-vae', got {self.codec}")
        if self.lora_rank < 1:
            raise ValueError(f"WorldModelConfig.lora_rank must be >= 1, got {self.lora_rank}")
        ActionSpace.from_dict(self.action_space)  # validates

    @property
    def family(self) -> str:
        return family_of(self.backbone)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a plain JSON tree

    @classmethod
    def from_dict(cls, d: dict) -> "WorldModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world model config has unknown fields: {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def _tiny(backbone: str) -> dict:
    # Pixel codecs mirror each real VAE's frame rule (k). Spatial factors keep a patch token (channels x patch
    # area) no wider than the tiny backbones' 64-d hidden state: a wider token makes the output projection a
    # low-rank bottleneck that cannot remove the noise (measured: samples stay noise at any training length).
    spatial, temporal = {"svd": (2, 1), "cosmos": (1, 4), "wan2.1": (1, 4), "wan2.2": (2, 4)}[backbone]
    codec = {"kind": "pixel", "spatial": spatial, "temporal": temporal}
    channels = PixelCodec(codec["spatial"], codec["temporal"]).latent_channels
    if backbone == "svd":
        return dict(
            backbone_config=svd.tiny_config(channels),
            codec=codec,
            image_encoder={"kind": "tiny"},
            features="sincos",
            hidden_dim=64,
            num_freqs=8,
        )
    cfg = cosmos.tiny_config(channels) if backbone == "cosmos" else wan.tiny_config(channels)
    if backbone == "wan2.2":  # 48 latent channels like the real Wan 2.2 VAE: 1x1 patches keep tokens 48-d
        cfg["patch_size"] = (1, 1, 1)
    return dict(backbone_config=cfg, codec=codec, features="mlp", hidden_dim=64)


def _full(backbone: str) -> dict:
    if backbone == "svd":
        return dict(
            backbone_config=dict(svd.tiny_config(4), **_SVD_FULL),
            source=svd.HUB_ID,
            codec={"kind": "svd-vae", "source": svd.HUB_ID, "subfolder": "vae"},
            image_encoder={"source": svd.HUB_ID, "subfolder": "image_encoder"},
            features="sincos",
            hidden_dim=512,
            num_freqs=16,
        )
    if backbone == "cosmos":
        return dict(
            backbone_config=cosmos.predict2_2b_config(),
            source=cosmos.HUB_ID,
            features="mlp",
            hidden_dim=1024,
            codec={"kind": "wan-vae", "source": cosmos.HUB_ID, "subfolder": "vae"},
        )
    cfg = wan.wan21_1_3b_config() if backbone == "wan2.1" else wan.wan22_ti2v_5b_config()
    hub = wan.HUB_IDS[backbone]
    return dict(
        backbone_config=cfg,
        source=hub,
        features="mlp",
        hidden_dim=1024,
        codec={"kind": "wan-vae", "source": hub, "subfolder": "vae"},
    )


def _tiny_i2v(backbone: str) -> dict:
    """Tiny Wan 2.1 I2V: channel-concat first frame (in = 2C + k), no CLIP branch."""
    codec = {"kind": "pixel", "spatial": 1, "temporal": 4}
    channels = PixelCodec(1, 4).latent_channels
    return dict(backbone_config=wan.tiny_config(channels, concat_mask=4), codec=codec, features="mlp", hidden_dim=64)


def _full_i2v(backbone: str) -> dict:
    hub = wan.HUB_IDS["wan2.1-i2v"]
    return dict(
        backbone_config=wan.wan21_i2v_14b_config(),
        source=hub,
        features="mlp",
        hidden_dim=1024,
        codec={"kind": "wan-vae", "source": hub, "subfolder": "vae"},
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
    action space, with overrides."""
    if name == "tiny":
        name = "wan2.1-tiny"
    if name not in PRESETS:
        raise ValueError(f"unknown world-model preset {name!r}; available: {', '.join(PRESETS)} (and 'tiny')")
    backbone, make = PRESETS[name]
    fields_ = dict(
        make(backbone), backbone=backbone, preset=name, action_space=get_action_space(action_space).to_dict()
    )
    unknown = set(overrides) - {f.name for f in fields(WorldModelConfig)}
    if unknown:
        raise ValueError(f"unknown world-model config fields: {sorted(unknown)}")
    fields_.update(overrides)
    return WorldModelConfig(**fields_)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _backbone_class(family: str):
    from diffusers import CosmosTransformer3DModel, UNetSpatioTemporalConditionModel, WanTransformer3DModel

    return {"svd": UNetSpatioTemporalConditionModel, "cosmos": CosmosTransformer3DModel, "wan": WanTransformer3DModel}[
        family
    ]


def _subfolder(family: str) -> str:
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


def _build_image_encoder(spec: dict | None, dtype: torch.dtype | None, family: str = "svd") -> nn.Module | None:
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


def _make_adapter(cfg: WorldModelConfig, backbone: nn.Module, codec: Codec | None, image_encoder) -> BackboneAdapter:
    if cfg.family == "svd":
        cond_scale = 1.0 / codec.scaling if isinstance(codec, SVDVaeCodec) else 1.0
        return svd.SVDAdapter(backbone, image_encoder=image_encoder, cond_scale=cond_scale)
    if cfg.family == "cosmos":
        return cosmos.CosmosAdapter(backbone, text_tokens=cfg.text_tokens)
    return wan.WanAdapter(backbone, text_tokens=cfg.text_tokens, image_encoder=image_encoder)


# ---------------------------------------------------------------------------------------------
# The world model
# ---------------------------------------------------------------------------------------------


class WorldModel(nn.Module):
    """Action-conditioned video world model around a pretrained diffusers backbone.

    Build with `WorldModel.from_preset`, `from_pretrained` (real weights) or `from_config`; persist with
    `save`/`load`.
    """

    def __init__(self, cfg: WorldModelConfig, backbone: nn.Module, codec: Codec | None, image_encoder=None) -> None:
        super().__init__()
        self.config = cfg
        self.action_space = ActionSpace.from_dict(cfg.action_space)
        self.codec = codec
        self.adapter = _make_adapter(cfg, backbone, codec, image_encoder)
        k = codec.temporal_compression if codec is not None else _temporal_of(cfg)
        self.encoder = ActionEncoder(
            ActionEncoderConfig(
                action_dim=self.action_space.dim,
                emb_dim=self.adapter.emb_dim,
                features=cfg.features,
                num_freqs=cfg.num_freqs,
                max_freq=cfg.max_freq,
                hidden_dim=cfg.hidden_dim,
                temporal_compression=k,
                state_dim=cfg.state_dim,
            )
        )
        self.objective = make_objective(self.adapter.objective, **cfg.objective)
        if cfg.train_mode == "lora":
            self._add_lora()
        self.set_train_mode(cfg.train_mode)

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, cfg: WorldModelConfig, *, load_codec: bool = True, dtype: torch.dtype | None = None
    ) -> "WorldModel":
        """Build with a randomly initialised backbone from `cfg.backbone_config` (tiny presets, sizing, `load`).

        Pretrained VAEs and image encoders named in the config are loaded from their source when
        `load_codec` is True.
        """
        backbone = _backbone_class(cfg.family).from_config(copy.deepcopy(cfg.backbone_config))
        codec = build_codec(cfg.codec, dtype) if (load_codec or cfg.codec["kind"] == "pixel") else None
        image_encoder = (
            _build_image_encoder(cfg.image_encoder, dtype, cfg.family) if load_codec or _is_tiny_encoder(cfg) else None
        )
        if cfg.image_encoder is not None and image_encoder is None:
            image_encoder = nn.Identity()  # placeholder for sizing without weights
        return cls(cfg, backbone, codec, image_encoder)

    @classmethod
    def from_preset(cls, name: str, action_space: str | int | ActionSpace = "nav3", **overrides: Any) -> "WorldModel":
        """A world model from a named preset. Real-size presets load the pretrained backbone from its hub id."""
        cfg = get_preset(name, action_space, **overrides)
        if cfg.source is not None:
            return cls.from_pretrained(cfg.source, backbone=cfg.backbone, action_space=action_space, config=cfg)
        return cls.from_config(cfg)

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        *,
        backbone: str,
        action_space: str | int | ActionSpace = "nav3",
        config: WorldModelConfig | None = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> "WorldModel":
        """Wrap a pretrained diffusers pipeline directory or hub id (unet/ or transformer/, vae/, image_encoder/).

        Args:
            source: hub id (e.g. "Wan-AI/Wan2.1-T2V-1.3B-Diffusers") or local directory in diffusers layout.
            backbone: "svd", "cosmos", "wan2.1" or "wan2.2".
        """
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        family = family_of(backbone)
        model = load_pretrained_component(
            _backbone_class(family),
            source,
            _subfolder(family),
            f"{backbone} backbone",
            **({"torch_dtype": dtype} if dtype else {}),
        )
        if config is None:
            base = get_preset(
                {"svd": "svd", "cosmos": "cosmos2-2b", "wan2.1": "wan2.1-1.3b", "wan2.2": "wan2.2-ti2v-5b"}[backbone],
                action_space,
            )
            kind = "svd-vae" if family == "svd" else "wan-vae"
            fields_ = dict(
                asdict(base),
                source=source,
                preset=f"{backbone}@{source}",
                codec={"kind": kind, "source": source, "subfolder": "vae"},
                image_encoder={"source": source, "subfolder": "image_encoder"} if family == "svd" else None,
            )
            if family == "wan" and model.config.get("image_dim") is not None:  # Wan 2.1 I2V: CLIP image cross-attention
                fields_.update(
                    image_encoder={"source": source, "subfolder": "image_encoder"}, text_tokens=wan.I2V_TEXT_TOKENS
                )
            fields_.update(overrides)
            config = WorldModelConfig(**fields_)
        config.backbone_config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        codec = build_codec(config.codec, dtype)
        image_encoder = _build_image_encoder(config.image_encoder, dtype, family)
        return cls(config, model, codec, image_encoder)

    # -- trainable parts ---------------------------------------------------------------------------
    def _add_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        lcfg = LoraConfig(
            r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, target_modules=LORA_TARGETS[self.config.family]
        )
        inject_adapter_in_model(lcfg, self.adapter.backbone)

    def set_train_mode(self, mode: str) -> None:
        """full: everything but frozen codec/image encoder trains; lora: LoRA + encoder; frozen: encoder only."""
        if mode not in TRAIN_MODES:
            raise ValueError(f"train mode must be one of {TRAIN_MODES}, got {mode!r}")
        for name, p in self.adapter.backbone.named_parameters():
            p.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))
        image_encoder = getattr(self.adapter, "image_encoder", None)
        if image_encoder is not None:
            image_encoder.requires_grad_(False)
        if self.codec is not None:
            self.codec.requires_grad_(False)
        self.encoder.requires_grad_(True)

    def action_parameters(self) -> list[nn.Parameter]:
        """Newly introduced parameters (action/state encoder, SVD null context): trained at 10x the lr."""
        params = list(self.encoder.parameters())
        null = getattr(self.adapter, "null_context", None)
        if null is not None:
            params.append(null)
        return params

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable backbone parameters under the current train mode."""
        return [p for p in self.adapter.backbone.parameters() if p.requires_grad]

    # -- the contract -------------------------------------------------------------------------------
    def embed_actions(
        self, actions: torch.Tensor, state: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(batch, frames, D)` normalised actions -> `(batch, latent_frames, emb_dim)`; `keep` `(batch,)` bools
        zero the embedding of dropped samples (action dropout / unconditional branch)."""
        emb = self.encoder(actions, state)  # validates dimension, frame rule and finiteness
        if keep is not None:
            emb = emb * keep.to(emb.dtype).view(-1, 1, 1)
        return emb

    def forward(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        cond: Condition,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(noisy `(b, f, C, h, w)`, t `(b,)`, cond, actions `(b, T, D)`, state `(b, S)`) -> `(b, f, C, h, w)`."""
        emb = self.embed_actions(actions, state, keep)
        with self.adapter.inject(emb):
            return self.adapter(noisy, t, cond)

    def forward_bare(self, noisy: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        """The unwrapped backbone (no action embedding)."""
        with self.adapter.inject(None):
            return self.adapter(noisy, t, cond)

    # -- pixels <-> latents -----------------------------------------------------------------------
    def _require_codec(self) -> Codec:
        if self.codec is None:
            raise ValueError("this world model was built without its codec (load_codec=False)")
        return self.codec

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """`(b, T, 3, H, W)` pixels in [-1, 1] -> `(b, f, C, h, w)` latents."""
        with torch.no_grad():
            return self._require_codec().encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """`(b, f, C, h, w)` latents -> `(b, T, 3, H, W)` pixels in [-1, 1]."""
        with torch.no_grad():
            return self._require_codec().decode(latents)

    def condition(
        self, first_frame: torch.Tensor, first_latent: torch.Tensor | None = None, frames: int | None = None
    ) -> Condition:
        """Conditioning for `(b, 3, H, W)` start frames in [-1, 1].

        `frames`: pixel frames of the clip to generate; needed by channel-concat backbones (Wan 2.1 I2V),
        whose condition is the codec's latents of (first frame, grey frames...) over the whole clip.
        """
        if first_frame.ndim != 4 or first_frame.shape[1] != 3:
            raise ValueError(f"first frame must be (batch, 3, height, width), got {tuple(first_frame.shape)}")
        if first_latent is None:
            first_latent = self.encode(first_frame.unsqueeze(1))[:, 0]
        extra = {}
        if getattr(self.adapter, "concat_condition", False):
            if frames is None:
                raise ValueError(f"{self.config.backbone}: a channel-concat backbone needs condition(..., frames=T)")
            padded = torch.zeros(
                first_frame.shape[0], frames, *first_frame.shape[1:], dtype=first_frame.dtype, device=first_frame.device
            )
            padded[:, 0] = first_frame
            extra["padded_latents"] = self.encode(padded)
        with torch.no_grad():
            return self.adapter.condition(first_frame, first_latent, **extra)

    # -- training ---------------------------------------------------------------------------------
    def loss(
        self,
        video: torch.Tensor,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        action_dropout: float = 0.0,
    ) -> torch.Tensor:
        """The backbone's own pretraining loss on a clip.

        Args:
            video: `(b, T, 3, H, W)` pixels in [-1, 1], frame 0 is the condition.
            actions: `(b, T, D)` normalised actions.
            state: `(b, S)` initial state or None.
            action_dropout: probability of dropping a sample's action embedding (for guidance).
        Returns:
            scalar mean loss.
        """
        if video.shape[:2] != actions.shape[:2]:
            raise ValueError(
                f"video {tuple(video.shape[:2])} and actions {tuple(actions.shape[:2])} disagree on (batch, frames)"
            )
        x0 = self.encode(video)
        cond = self.condition(video[:, 0], x0[:, 0], frames=video.shape[1])
        b, device = x0.shape[0], x0.device
        t = self.objective.sample_t(b, generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        keep = None
        if action_dropout > 0:
            keep = torch.rand(b, generator=generator, device=device) >= action_dropout
        frame_mask = None
        if self.adapter.replaces_first_frame:
            frame_mask = torch.ones(x0.shape[1], dtype=torch.bool, device=device)
            frame_mask[0] = False
        emb = self.embed_actions(actions, state, keep)

        def net(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            with self.adapter.inject(emb):
                return self.adapter(x, tt, cond)

        return self.objective.loss(net, x0, t, noise, frame_mask).mean()

    # -- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        first_frame: torch.Tensor,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        *,
        steps: int = 20,
        sampler: str = "euler",
        seeds: list[int] | None = None,
        guidance: float = 1.0,
        guidance_interval: tuple[float, float] | None = None,
        return_latents: bool = False,
    ) -> torch.Tensor:
        """Imagine `T` frames from `(b, 3, H, W)` start frames under `(b, T, D)` normalised actions.

        Each sample's starting noise comes from its own seed, so a batch equals its samples run one by one.
        `guidance > 1` applies classifier-free guidance on actions: the action-free prediction is the one with a
        zero action embedding, as the passive stage and action dropout train it. `guidance_interval=(lo, hi)`
        guides only at noise levels in `(lo, hi]` (flow time t, or EDM sigma), as in Kynkaanniemi et al. 2024.
        Returns `(b, T, 3, H, W)` in [-1, 1] (frame 0 is the given frame), or latents if `return_latents`.
        """
        b = first_frame.shape[0]
        if actions.ndim != 3 or actions.shape[0] != b:
            raise ValueError(f"actions must be (batch={b}, frames, D), got {tuple(actions.shape)}")
        codec = self._require_codec()
        f, c, h, w = codec.latent_shape(actions.shape[1], first_frame.shape[-2], first_frame.shape[-1])
        self.encoder.latent_frames(actions.shape[1])
        if guidance_interval is not None and not guidance_interval[0] < guidance_interval[1]:
            raise ValueError(f"guidance_interval must be (lo, hi) with lo < hi, got {guidance_interval}")
        lo, hi = guidance_interval if guidance_interval is not None else (-math.inf, math.inf)
        seeds = list(range(b)) if seeds is None else list(seeds)
        if len(seeds) != b:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {b}")
        device = first_frame.device
        x = torch.cat(
            [
                self.objective.prior((1, f, c, h, w), generator=torch.Generator(device="cpu").manual_seed(s))
                for s in seeds
            ]
        ).to(device)
        cond = self.condition(first_frame, frames=actions.shape[1])
        emb = self.embed_actions(actions, state)

        def net(xx: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            with self.adapter.inject(emb):
                out = self.adapter(xx, tt, cond)
            if guidance != 1.0 and lo < float(tt.flatten()[0]) <= hi:
                with self.adapter.inject(torch.zeros_like(emb)):
                    uncond = self.adapter(xx, tt, cond)
                out = uncond + guidance * (out - uncond)
            return out

        latents = get_sampler(sampler)(self.objective, net, x, steps)
        if self.adapter.replaces_first_frame:
            latents[:, 0] = cond["latent"]
        if return_latents:
            return latents
        video = codec.decode(latents).clamp(-1, 1)
        video[:, 0] = first_frame
        return video

    # -- persistence ------------------------------------------------------------------------------
    def _external_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes loaded from a pretrained source rather than saved (frozen VAE / CLIP)."""
        prefixes = ["codec."]
        if self.config.image_encoder and "source" in self.config.image_encoder:
            prefixes.append("adapter.image_encoder.")
        return tuple(prefixes)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` and `model.safetensors` (atomically) to `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        skip = self._external_prefixes()
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if not k.startswith(skip)}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "actwm": "world_model"})
        atomic_write_json(directory / CONFIG_NAME, self.config.to_dict())
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        backbone: str | None = None,
        action_space: str | ActionSpace | None = None,
        dtype: torch.dtype | None = None,
    ) -> "WorldModel":
        """Load a saved world model; `backbone` / `action_space` (if given) must match the checkpoint."""
        directory = Path(directory)
        cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not directory.is_dir():
            raise ValueError(f"{directory}: world-model checkpoint directory does not exist")
        for p in (cfg_path, weights):
            if not p.is_file():
                raise ValueError(f"{directory}: not a world-model checkpoint (missing {p.name})")
        cfg = WorldModelConfig.from_dict(read_json(cfg_path))
        check_compatible(cfg, backbone, action_space, where=str(directory))
        model = cls.from_config(cfg, dtype=dtype)
        model.load_weights(weights)
        return model

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load `model.safetensors` strictly (except the external frozen parts)."""
        state = load_file(str(path))
        missing, unexpected = self.load_state_dict(state, strict=False)
        skip = self._external_prefixes()
        missing = [k for k in missing if not k.startswith(skip)]
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )

    def describe(self) -> dict[str, Any]:
        """Sizes and the adapter's stated assumptions."""
        spec = self.adapter.spec(self.codec) if self.codec is not None else None
        return {
            "backbone": self.config.backbone,
            "preset": self.config.preset,
            "action_space": self.action_space.name,
            "action_dim": self.action_space.dim,
            "base_params": count_parameters(self.adapter.backbone),
            "action_params": count_parameters(self.encoder),
            "spec": asdict(spec) if spec is not None else None,
        }


def _temporal_of(cfg: WorldModelConfig) -> int:
    if cfg.codec["kind"] == "pixel":
        return int(cfg.codec.get("temporal", 1))
    return 1 if cfg.codec["kind"] == "svd-vae" else 4


def _is_tiny_encoder(cfg: WorldModelConfig) -> bool:
    return bool(cfg.image_encoder) and cfg.image_encoder.get("kind") == "tiny"


def check_compatible(
    cfg: WorldModelConfig, backbone: str | None, action_space: str | ActionSpace | None, where: str
) -> None:
    """Raise ValueError when a checkpoint's backbone or action space differs from the expected ones."""
    if backbone is not None and cfg.backbone != backbone:
        raise ValueError(f"{where}: checkpoint is for backbone {cfg.backbone!r}, expected {backbone!r}")
    if action_space is not None:
        want = get_action_space(action_space)
        have = ActionSpace.from_dict(cfg.action_space)
        if (have.name, have.dim) != (want.name, want.dim):
            raise ValueError(
                f"{where}: checkpoint is for action space {have.name!r} (D={have.dim}), expected {want.name!r} "
                f"(D={want.dim})"
            )
