"""LPIPS (Zhang et al. 2018, v0.1) without torchvision.

The trunk is torchvision's AlexNet or VGG16 (:mod:`actwm.eval.backbones`), loaded from the official
torchvision checkpoint file; the calibrated linear heads ``lin0..lin4`` come from the ``lpips`` PyPI
package, which ships them as ``lpips/weights/v0.1/{alex,vgg}.pth`` (install with
``pip install --no-deps lpips``; we only read its files and never import it, since its ``__init__``
imports torchvision).

Computation (identical to ``lpips.LPIPS(net=..., version="0.1")``): inputs in [0, 1] are mapped to
[-1, 1], shifted/scaled per channel by the ScalingLayer constants, passed through the trunk; at each of
five ReLU taps the features are unit-normalised over channels, their squared difference is weighted by
the 1x1 head, averaged over space, and the five layers are summed.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from actwm.eval.backbones import VGG16, AlexNet, tap_features
from actwm.eval.weights import find_weights, load_state_dict, load_strict, torch_hub_checkpoints_dir


@dataclass(frozen=True)
class TrunkSpec:
    cls: type
    filename: str
    url: str


TRUNKS: dict[str, TrunkSpec] = {
    "alex": TrunkSpec(
        AlexNet, "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    ),
    "vgg": TrunkSpec(VGG16, "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}

#: lpips' ScalingLayer constants (ImageNet mean/std expressed for inputs in [-1, 1])
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def lpips_heads_path(net: str) -> Path:
    """Path of the linear heads the ``lpips`` package ships, found without importing ``lpips``."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"LPIPS {net} heads: the 'lpips' package is not installed; run `pip install --no-deps lpips` "
            f"(it ships weights/v0.1/{net}.pth) or pass heads=PATH"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS {net} heads: {path} is missing; reinstall the 'lpips' package or pass heads=PATH"
        )
    return path


def normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise ``(batch, C, H, W)`` features over channels (lpips' ``normalize_tensor``)."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


class NetLinLayer(nn.Module):
    """A 1x1 conv without bias; keys ``model.1.weight`` like lpips' head (index 0 was its Dropout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS distance; ``forward(x0, x1)`` with ``(batch, 3, H, W)`` in [0, 1] returns ``(batch,)``."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in TRUNKS:
            raise ValueError(f"LPIPS net must be one of {sorted(TRUNKS)}, got {net!r}")
        self.net_name = net
        self.net = TRUNKS[net].cls(with_classifier=False)
        self.taps = self.net.LPIPS_TAPS
        for k, channels in enumerate(self.net.LPIPS_CHANNELS):
            self.add_module(f"lin{k}", NetLinLayer(channels))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    # -------------------------------------------------------------------------------- loading
    def load_trunk(self, path: str | os.PathLike) -> None:
        """Load the official torchvision checkpoint (``features.*`` strictly; ``classifier.*`` unused)."""
        state = load_state_dict(path)
        expected_other = set(_classifier_keys(self.net_name))
        other = {k for k in state if not k.startswith("features.")}
        if other - expected_other:
            raise ValueError(
                f"{path}: unexpected keys for torchvision {self.net_name} checkpoint: "
                f"{sorted(other - expected_other)[:5]}"
            )
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        load_strict(self.net.features, features, path)

    def load_heads(self, path: str | os.PathLike) -> None:
        """Load lpips' linear heads (``lin0.model.1.weight`` ... ``lin4.model.1.weight``) strictly."""
        state = load_state_dict(path)
        heads = nn.ModuleDict({f"lin{k}": getattr(self, f"lin{k}") for k in range(len(self.taps))})
        load_strict(heads, state, path)

    @classmethod
    def from_pretrained(
        cls, net: str = "alex", weights: str | os.PathLike | None = None, heads: str | os.PathLike | None = None
    ) -> "LPIPS":
        """Build LPIPS with real weights.

        Args:
            net: "alex" or "vgg".
            weights: torchvision trunk checkpoint (file or directory); default: search
                ``$ACTWM_WEIGHTS_DIR`` then torch hub's checkpoint cache for the official file name.
            heads: linear heads file; default: the one shipped in the ``lpips`` package.
        """
        if net not in TRUNKS:
            raise ValueError(f"LPIPS net must be one of {sorted(TRUNKS)}, got {net!r}")
        spec = TRUNKS[net]
        trunk_path = find_weights(
            [spec.filename, spec.filename.rsplit(".", 1)[0] + ".safetensors"],
            what=f"LPIPS {net} trunk (torchvision {spec.cls.__name__} ImageNet weights)",
            source=spec.url,
            weights=weights,
            extra_dirs=[torch_hub_checkpoints_dir()],
            allow_hub=False,
        )
        heads_path = Path(heads) if heads is not None else lpips_heads_path(net)
        if not heads_path.is_file():
            raise FileNotFoundError(f"LPIPS {net} heads: {heads_path} does not exist")
        model = cls(net)
        model.load_trunk(trunk_path)
        model.load_heads(heads_path)
        return model

    # -------------------------------------------------------------------------------- compute
    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``(batch, 3, H, W)`` x2 in [0, 1] -> LPIPS distance ``(batch,)``."""
        feats0 = tap_features(self.net.features, (2 * x0 - 1 - self.shift) / self.scale, self.taps)
        feats1 = tap_features(self.net.features, (2 * x1 - 1 - self.shift) / self.scale, self.taps)
        total = torch.zeros(x0.shape[0], device=x0.device, dtype=x0.dtype)
        for k, (f0, f1) in enumerate(zip(feats0, feats1)):
            diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total

    def distance(self, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-frame LPIPS of ``(frames, 3, H, W)`` pairs in [0, 1] -> ``(frames,)``."""
        with torch.no_grad():
            return self.forward(gt, pred)


def _classifier_keys(net: str) -> list[str]:
    indices = (1, 4, 6) if net == "alex" else (0, 3, 6)
    return [f"classifier.{i}.{p}" for i in indices for p in ("weight", "bias")]
