"""The typed world-model config (saved as `config.json` beside every checkpoint) and its compatibility check."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from actwm.actions import ActionSpace, get_action_space
from actwm.checks import require, require_at_least, require_choice

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

    @property
    def family(self) -> str:
        return family_of(self.backbone)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a plain JSON tree

    @classmethod
    def from_dict(cls, d: dict) -> "WorldModelConfig":
        """From `config.json` (its checkpoint bookkeeping keys, e.g. the weights' sha256, are not fields)."""
        d = {k: v for k, v in d.items() if k not in CHECKPOINT_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world model config has unknown fields: {sorted(unknown)}")
        return cls(**d)


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
