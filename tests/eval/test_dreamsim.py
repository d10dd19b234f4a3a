"""DreamSim (dino_vitb16): loading the DINO backbone + the PEFT LoRA adapter from a local directory.

Tests use a tiny random ViT saved with DINO's key names and a LoRA adapter written by ``peft`` itself
(``save_pretrained``) on a module tree shaped like DreamSim's ``PerceptualModel``
(``extractor_list.0.model`` = the ViT, ``extractor_list.0.proj`` = DINO's projection head), so the
adapter files have exactly the official layout. Random weights are never the real metric.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from actwm.eval.backbones import VisionTransformer
from actwm.eval.dreamsim import DreamSim
from actwm.eval.metrics import get_metric


class _Extractor(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.model = vit
        self.proj = nn.Linear(64, 16)  # stands in for DINO's projection head (unused for CLS features)


class _Perceptual(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.extractor_list = nn.ModuleList([_Extractor(vit)])


def _tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=16, dim=64, depth=2, heads=1)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return vit


@pytest.fixture(scope="module")
def dreamsim_dir(tmp_path_factory):
    """Directory laid out like DreamSim's cache: checkpoints/dino_vitbase16_pretrain.pth + LoRA dir."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("dreamsim")
    vit = _tiny_vit()
    (root / "checkpoints").mkdir()
    torch.save(vit.state_dict(), root / "checkpoints" / "dino_vitbase16_pretrain.pth")
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["qkv", "fc1", "fc2", "proj"])
    peft_model = get_peft_model(_Perceptual(vit), config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn_like(p))
    peft_model.save_pretrained(root / "dino_vitb16_single_lora")
    return root, peft_model.eval()


def test_official_layout_loads_and_merges_like_peft(dreamsim_dir):
    """actwm's loader on the official file layout (checkpoints/dino_vitbase16_pretrain.pth + the PEFT
    adapter directory) merges every LoRA pair, Conv2d patch embedding included, exactly as peft's own
    `merge_and_unload` does; the DINO projection head's LoRA is the one part left out."""
    import copy

    from safetensors.torch import load_file

    root, peft_model = dreamsim_dir
    keys = set(load_file(str(root / "dino_vitb16_single_lora" / "adapter_model.safetensors")))
    assert "base_model.model.extractor_list.0.model.patch_embed.proj.lora_B.weight" in keys  # a Conv2d
    assert "base_model.model.extractor_list.0.proj.lora_A.weight" in keys  # ignored head
    ours = DreamSim.from_pretrained(weights=root).vit.state_dict()
    merged = copy.deepcopy(peft_model).merge_and_unload().extractor_list[0].model.state_dict()
    assert set(ours) == set(merged)
    for name, value in merged.items():
        assert torch.allclose(ours[name], value, atol=1e-6), name
    base = _tiny_vit().state_dict()
    changed = {n for n in base if not torch.equal(base[n], ours[n])}
    assert "patch_embed.proj.weight" in changed and "blocks.1.mlp.fc2.weight" in changed


def test_merged_lora_matches_peft(dreamsim_dir):
    root, peft_model = dreamsim_dir
    ours = DreamSim.from_pretrained(weights=root)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        vit = peft_model.base_model.model.extractor_list[0].model
        ref = vit.forward_tokens((x - ours.mean) / ours.std)[:, 0]
        ref = ref - ref.mean(dim=1, keepdim=True)
        ref = ref / ref.norm(dim=1, keepdim=True)
        base = DreamSim(_tiny_vit(), img_size=32).embed(x)  # without LoRA
    got = ours.embed(x)
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)  # the adapter really changed the model


def test_vit_matches_dreamsim_dino_vit():
    """Our ViT against the DINO ViT that the dreamsim package vendors (loaded by file path: importing
    the ``dreamsim`` package itself needs torchvision)."""
    spec = importlib.util.find_spec("dreamsim")
    if spec is None:
        pytest.skip("reference needs `pip install --no-deps dreamsim`")
    path = list(spec.submodule_search_locations)[0] + "/feature_extraction/vision_transformer.py"
    ref_spec = importlib.util.spec_from_file_location("_dino_vit_ref", path)
    module = importlib.util.module_from_spec(ref_spec)
    ref_spec.loader.exec_module(module)
    ref = module.VisionTransformer(
        img_size=[32],
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=1,
        qkv_bias=True,
        norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6),
    ).eval()
    ours = _tiny_vit().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same key names both ways
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_metric_and_missing_files(dreamsim_dir, tmp_path, monkeypatch):
    root, _ = dreamsim_dir
    metric = get_metric("dreamsim", weights=root)
    assert (metric.name, metric.kind, metric.higher_is_better) == ("dreamsim", "frame", False)
    gt = torch.rand(3, 3, 40, 40)
    d = metric(gt, gt.flip(0))
    assert d.shape == (3,) and d[0] > 1e-4 and abs(d[1]) < 1e-5  # middle frame identical
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dino_vitbase16_pretrain.pth") as info:
        get_metric("dreamsim")
    assert "adapter_config.json" in str(info.value) and "dreamsim_dino_vitb16_checkpoint.zip" in str(info.value)
