"""The typed world-model config (saved as `config.json` beside every checkpoint) and its compatibility check."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from actwm.actions import ActionSpace, get_action_space
from actwm.checks import ConfigError, require, require_at_least, require_choice
from actwm.models.embeddings import ActionEncoderConfig
from actwm.models.kvaf import KvafConfig

BACKBONES = ("svd", "cosmos", "wan2.1", "wan2.2")
TRAIN_MODES = ("full", "lora", "frozen")
CODEC_KINDS = ("pixel", "svd-vae", "wan-vae")
LORA_TARGETS = {
    "svd": ["to_q", "to_k", "to_v", "to_out.0"],
    "cosmos": ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"],
    "wan": ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"],
}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
CHECKPOINT_KEYS = ("weights_sha256",)  # keys config.json holds beside the config fields
# `ActionEncoderConfig` fields the world model derives (the action space's D, the adapter's embedding width, the
# codec's k); the others are `WorldModelConfig.encoder`'s keys (flat fields of config.json before it).
ENCODER_DERIVED = ("action_dim", "emb_dim", "temporal_compression")
ENCODER_KEYS = tuple(f.name for f in fields(ActionEncoderConfig) if f.name not in ENCODER_DERIVED)


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
        encoder: the action encoder's learned settings, `ActionEncoderConfig` fields other than those the model
            derives (`ENCODER_KEYS`: features "sincos" or "mlp", num_freqs, max_freq, hidden_dim, state_dim = size
            of the initial-state embedding, 0 = off); missing keys are filled in with `ActionEncoderConfig`'s
            defaults at construction.
        train_mode: "full", "lora" or "frozen" (frozen: only the action encoder trains).
        lora_rank, lora_alpha: LoRA settings when train_mode == "lora".
        text_tokens: length of the fixed cross-attention context (Cosmos, Wan).
        objective: overrides of the objective's fields (e.g. {"shift": 1.0}).
        action_mode: what action row t means in training data: "delta" (motion from frame t to t+1) or
            "cumulative" (pose of frame t relative to frame 0, as EgoWM). Rollouts convert raw deltas to it.
        image_size: (height, width) in pixels the model was trained at (None: any size the codec accepts).
        fps: frame rate of the training clips (informational; rollouts write videos at it).
        clip_frames: pixel frames per training clip = the generation window of one chunk (None: 1 + 2k, min 9).
        conditioning: the branches the model is built with: "actions" (EgoWM action embedding), "kvaf" (the EA-WM
            KVAF stream, `actwm.models.kvaf`) or "kvaf+actions" (both on one backbone).
        kvaf: settings of the KVAF branch (`actwm.models.kvaf.KvafConfig` fields).
    """

    backbone: str
    action_space: dict
    backbone_config: dict
    codec: dict
    preset: str = "custom"
    source: str | None = None
    image_encoder: dict | None = None
    encoder: dict = field(default_factory=dict)
    train_mode: str = "full"
    lora_rank: int = 16
    lora_alpha: float = 16.0
    text_tokens: int = 1
    objective: dict = field(default_factory=dict)
    action_mode: str = "delta"
    image_size: list[int] | None = None
    fps: float | None = None
    clip_frames: int | None = None
    conditioning: str = "actions"
    kvaf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_choice(self, "conditioning", ("actions", "kvaf", "kvaf+actions"))
        require_choice(self, "action_mode", ("delta", "cumulative"))
        size = self.image_size
        require(size is None or (len(size) == 2 and min(size) >= 1), self, "image_size", "[height, width] or None")
        require_choice(self, "backbone", BACKBONES)
        require_choice(self, "train_mode", TRAIN_MODES)
        require(self.codec.get("kind") in CODEC_KINDS, self, "codec", f"a dict with 'kind' one of {CODEC_KINDS}")
        require_at_least(self, 1, "lora_rank")
        ActionSpace.from_dict(self.action_space)  # validates
        KvafConfig.from_dict(self.kvaf)  # validates (the branch is built from it)
        self._fill_encoder()

    def _fill_encoder(self) -> None:
        """Validate `encoder` and spell out its defaults (config.json records every setting)."""
        require(isinstance(self.encoder, dict), self, "encoder", "a dict of ActionEncoderConfig settings")
        unknown = sorted(set(self.encoder) - set(ENCODER_KEYS))
        require(not unknown, "WorldModelConfig", "encoder", f"a dict of {list(ENCODER_KEYS)}; unknown keys {unknown}")
        try:
            settings = self.encoder_config(action_dim=1, emb_dim=1)
        except ConfigError as exc:  # named as the field the user wrote
            raise ConfigError("WorldModelConfig", f"encoder.{exc.field}", exc.requirement, exc.value) from None
        self.encoder = {k: getattr(settings, k) for k in ENCODER_KEYS}

    def encoder_config(self, action_dim: int, emb_dim: int, temporal_compression: int = 1) -> ActionEncoderConfig:
        """The `ActionEncoderConfig` of `encoder` with the sizes the model derives: D of the action space, the
        adapter's embedding width and the codec's temporal compression k."""
        return ActionEncoderConfig(action_dim, emb_dim, temporal_compression=temporal_compression, **self.encoder)

    @property
    def family(self) -> str:
        return family_of(self.backbone)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a plain JSON tree

    @classmethod
    def from_dict(cls, d: dict) -> "WorldModelConfig":
        """From `config.json` (its checkpoint bookkeeping keys, e.g. the weights' sha256, are not fields; the flat
        action-encoder keys of older files move into `encoder`)."""
        d = nest_encoder_keys({k: v for k, v in d.items() if k not in CHECKPOINT_KEYS})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world model config has unknown fields: {sorted(unknown)}")
        return cls(**d)


def nest_encoder_keys(d: dict) -> dict:
    """WorldModelConfig fields `d` with flat action-encoder keys (`ENCODER_KEYS`, the layout before the nested
    `encoder` field, still accepted in config.json and overrides) moved into `d["encoder"]`. A key given both
    flat and nested with different values raises ValueError."""
    flat = {k: d[k] for k in ENCODER_KEYS if k in d}
    if not flat:
        return dict(d)
    nested = dict(d.get("encoder") or {})
    clash = {k: (v, nested[k]) for k, v in flat.items() if k in nested and nested[k] != v}
    if clash:
        raise ValueError(f"WorldModelConfig.encoder: keys given both flat and nested differ (flat, nested): {clash}")
    return dict({k: v for k, v in d.items() if k not in flat}, encoder=dict(nested, **flat))


def with_overrides(base: dict, overrides: dict) -> dict:
    """WorldModelConfig fields `base` updated by `overrides`: fields are replaced, except `encoder`, whose keys
    update the base's one by one (flat encoder keys are nested first, so {"hidden_dim": 32} and
    {"encoder": {"hidden_dim": 32}} mean the same)."""
    overrides = nest_encoder_keys(overrides)
    merged = dict(base, **overrides)
    if "encoder" in overrides:
        merged["encoder"] = dict(base.get("encoder") or {}, **overrides["encoder"])
    return merged


def temporal_of(cfg: WorldModelConfig) -> int:
    if cfg.codec["kind"] == "pixel":
        return int(cfg.codec.get("temporal", 1))
    return 1 if cfg.codec["kind"] == "svd-vae" else 4


def is_tiny_encoder(cfg: WorldModelConfig) -> bool:
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
