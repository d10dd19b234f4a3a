"""DreamSim (Fu et al. 2023), single-branch ``dino_vitb16`` variant, without torchvision or torch.hub.

The DreamSim package builds this model from two downloads, which must be present locally here:

* the DINO ViT-B/16 backbone ``dino_vitbase16_pretrain.pth`` (what ``torch.hub.load(
  "facebookresearch/dino:main", "dino_vitb16")`` fetches; DreamSim's cache keeps it under
  ``checkpoints/``), keys ``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``;
* the DreamSim LoRA adapter ``dino_vitb16_single_lora/`` (``adapter_config.json`` +
  ``adapter_model.safetensors`` or ``adapter_model.bin``) from the release zip
  ``dreamsim_dino_vitb16_checkpoint.zip``, a PEFT LoRA whose keys look like
  ``base_model.model.extractor_list.0.model.blocks.0.attn.qkv.lora_A.weight``.

Point ``weights=`` at a directory holding both (e.g. the ``cache_dir`` a ``dreamsim.dreamsim(
dreamsim_type="dino_vitb16")`` call populated on a machine with internet), or put them in
``$ACTWM_WEIGHTS_DIR/dreamsim``. The LoRA deltas are merged into the backbone weights
(``W += alpha / r * B @ A``).

Computation as in DreamSim: frames in [0, 1] are resized to 224 px (the backbone's native size) (bicubic,
antialiased), normalised
with the ImageNet mean/std, the CLS token of the last transformer block (before the final norm) is the
embedding, which is centred and unit-normalised; distance = 1 - cosine similarity. The ensemble model
(DINO + CLIP + OpenCLIP) is not supported.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from actwm.eval.backbones import VisionTransformer
from actwm.eval.weights import load_state_dict, load_strict, weights_dir

BACKBONE_FILES = (
    "dino_vitbase16_pretrain.pth",
    "checkpoints/dino_vitbase16_pretrain.pth",
    "dino_vitbase16_pretrain.safetensors",
)
LORA_DIR = "dino_vitb16_single_lora"
LORA_PREFIX = "base_model.model.extractor_list.0.model."
IGNORED_LORA_PREFIXES = ("base_model.model.extractor_list.0.proj.",)  # DINO projection head: unused for CLS
SOURCE = (
    "https://github.com/ssundaram21/dreamsim/releases/download/v0.2.0-checkpoints/"
    "dreamsim_dino_vitb16_checkpoint.zip (unzip; gives dino_vitb16_single_lora/) and "
    "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_dir() -> Path:
    """Where DreamSim files are looked for by default: ``$ACTWM_WEIGHTS_DIR/dreamsim``."""
    return weights_dir() / "dreamsim"


def _resolve_dir(weights: str | os.PathLike | None, hub: str | None) -> Path:
    if weights is not None and hub is not None:
        raise ValueError("DreamSim: pass weights= or hub=, not both")
    if hub is not None:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(hub, allow_patterns=[*BACKBONE_FILES, f"{LORA_DIR}/*"]))
        except Exception as exc:
            raise FileNotFoundError(f"DreamSim: could not fetch hub={hub!r} ({type(exc).__name__}: {exc})") from exc
    return Path(weights).expanduser() if weights is not None else default_dir()


def _find_files(root: Path) -> tuple[Path, Path, Path]:
    backbone = next((root / n for n in BACKBONE_FILES if (root / n).is_file()), None)
    lora = root / LORA_DIR
    config = lora / "adapter_config.json"
    adapter = next((lora / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (lora / n).is_file()), None)
    missing = []
    if backbone is None:
        missing.append(" or ".join(str(root / n) for n in BACKBONE_FILES))
    if not config.is_file():
        missing.append(str(config))
    if adapter is None:
        missing.append(str(lora / "adapter_model.safetensors") + " (or adapter_model.bin)")
    if missing:
        raise FileNotFoundError(
            "DreamSim (dino_vitb16): missing weight file(s): "
            + "; ".join(missing)
            + f". Get them from {SOURCE}. Pass weights=DIR holding both, or put them in {default_dir()} "
            "(set $ACTWM_WEIGHTS_DIR to change the base directory)."
        )
    return backbone, config, adapter  # type: ignore[return-value]


def merge_lora(model: nn.Module, config_path: Path, adapter_path: Path, prefix: str = LORA_PREFIX) -> int:
    """Merge a PEFT LoRA adapter into ``model``'s Linear/Conv2d weights; returns the number merged.

    Keys ``<prefix><module path>.lora_A.weight`` / ``.lora_B.weight`` are matched to ``model``'s modules.
    """
    config = json.loads(config_path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{config_path}: peft_type {config.get('peft_type')!r} is not LORA")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_dora"):
        raise ValueError(f"{config_path}: rank/alpha patterns and DoRA are not supported")
    if config.get("bias", "none") != "none":
        raise ValueError(f"{config_path}: LoRA bias={config['bias']!r} is not supported")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    state = load_state_dict(adapter_path)
    modules = dict(model.named_modules())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith(IGNORED_LORA_PREFIXES):
            continue
        if not key.startswith(prefix) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"{adapter_path}: unexpected key {key!r} (expected {prefix}<module>.lora_[AB].weight)")
        path, part = key[len(prefix) :].rsplit(".lora_", 1)
        pairs.setdefault(path, {})[part[0]] = value
    for path, ab in pairs.items():
        target = modules.get(path)
        if not isinstance(target, (nn.Linear, nn.Conv2d)) or set(ab) != {"A", "B"}:
            raise ValueError(f"{adapter_path}: LoRA for {path!r} does not match a Linear/Conv2d with A and B")
        delta = (ab["B"].flatten(1).double() @ ab["A"].flatten(1).double()) * scale
        if delta.numel() != target.weight.numel():
            raise ValueError(
                f"{adapter_path}: LoRA for {path!r} has shape {tuple(delta.shape)}, weight {tuple(target.weight.shape)}"
            )
        with torch.no_grad():
            target.weight += delta.reshape(target.weight.shape).to(target.weight.dtype)
    return len(pairs)


class DreamSim(nn.Module):
    """DreamSim distance; ``distance(gt, pred)`` with ``(frames, 3, H, W)`` in [0, 1] -> ``(frames,)``."""

    def __init__(self, vit: VisionTransformer, img_size: int = 224) -> None:
        super().__init__()
        self.vit = vit.eval().requires_grad_(False)
        self.img_size = img_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, hub: str | None = None) -> "DreamSim":
        """Load the DINO backbone and merge the DreamSim LoRA (see module docstring for the files)."""
        root = _resolve_dir(weights, hub)
        backbone_path, config_path, adapter_path = _find_files(root)
        state = load_state_dict(backbone_path)
        vit = VisionTransformer.from_state_dict_shapes(state)
        load_strict(vit, state, backbone_path)
        if merge_lora(vit, config_path, adapter_path) == 0:
            raise ValueError(f"{adapter_path}: no LoRA weights for the DINO backbone found")
        return cls(vit, img_size=vit.img_size)  # 224 for the official ViT-B/16

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(batch, 3, H, W)`` in [0, 1] -> centred, unit-norm embeddings ``(batch, dim)``."""
        if tuple(images.shape[-2:]) != (self.img_size, self.img_size):
            images = F.interpolate(
                images, size=(self.img_size,) * 2, mode="bicubic", align_corners=False, antialias=True
            )
            images = images.clamp(0, 1)
        cls_token = self.vit.forward_tokens((images - self.mean) / self.std)[:, 0]
        centred = cls_token - cls_token.mean(dim=1, keepdim=True)
        return centred / centred.norm(dim=1, keepdim=True)

    def distance(self, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``1 - cos(embed(gt), embed(pred))`` per frame, ``(frames,)``."""
        with torch.no_grad():
            return 1.0 - F.cosine_similarity(self.embed(gt), self.embed(pred), dim=-1)
