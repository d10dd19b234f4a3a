"""LPIPS: our torchvision-free implementation against the reference ``lpips`` package.

The reference ``lpips.LPIPS`` imports torchvision (``lpips/pretrained_networks.py`` does
``from torchvision import models as tv`` and calls ``tv.alexnet(pretrained=...).features`` /
``tv.vgg16(pretrained=...).features``; nothing else from torchvision is used). torchvision cannot be
imported on this CPU-only stack, so this test injects a minimal fake ``torchvision`` package into
``sys.modules`` (only for the duration of the test) whose ``models.alexnet`` / ``models.vgg16`` are
written here from plain ``torch.nn`` with torchvision's layer structure and, when called with
``pretrained=True``, load the random checkpoint this test saved in torchvision's key layout -- just
as torchvision would load its ImageNet file. The reference then loads the linear heads it ships.
The fake is deliberately independent of ``actwm.eval.backbones``.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from actwm.eval.lpips import LPIPS, lpips_heads_path
from actwm.eval.metrics import get_metric


def _tv_alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
    )


def _tv_vgg16_features() -> nn.Sequential:
    layers, c = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def _random_trunk_checkpoint(net: str, path) -> None:
    """Random trunk saved with torchvision's key names (``features.N.weight``)."""
    torch.manual_seed(0 if net == "alex" else 1)
    features = _tv_alexnet_features() if net == "alex" else _tv_vgg16_features()
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            nn.init.normal_(m.bias, std=0.1)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)


@pytest.fixture
def fake_torchvision(monkeypatch):
    """Install a fake ``torchvision`` exposing only ``models.alexnet`` / ``models.vgg16``."""
    checkpoints: dict[str, str] = {}

    def make(name, builder):
        def constructor(pretrained: bool = False, **_):
            model = nn.Module()
            model.features = builder()
            if pretrained:
                state = torch.load(checkpoints[name], map_location="cpu", weights_only=True)
                model.load_state_dict(state, strict=True)
            return model

        return constructor

    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.alexnet = make("alex", _tv_alexnet_features)
    models.vgg16 = make("vgg", _tv_vgg16_features)
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    for mod in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, mod)
    yield checkpoints
    for mod in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        sys.modules.pop(mod, None)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_reference_lpips(net, tmp_path, fake_torchvision):
    ckpt = tmp_path / ("alexnet-owt-7be5be79.pth" if net == "alex" else "vgg16-397923af.pth")
    _random_trunk_checkpoint(net, ckpt)
    fake_torchvision[net] = str(ckpt)
    import lpips  # the reference, importable thanks to the fake torchvision

    ref = lpips.LPIPS(net=net, version="0.1", verbose=False).eval()
    ours = LPIPS.from_pretrained(net=net, weights=ckpt)
    torch.manual_seed(2)
    x0 = torch.rand(3, 3, 64, 64)
    x1 = (x0 + 0.2 * torch.randn_like(x0)).clamp(0, 1)
    x1[2] = torch.rand(3, 64, 64)
    with torch.no_grad():
        expected = ref(x0, x1, normalize=True).reshape(-1)
    got = ours.distance(x0, x1)
    assert got.shape == (3,)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)
    assert got[2] > got[0] > 0  # an unrelated image is farther than a noisy copy
    assert torch.allclose(ours.distance(x0, x0), torch.zeros(3), atol=1e-6)


def test_heads_found_without_importing_lpips():
    sys.modules.pop("lpips", None)
    path = lpips_heads_path("alex")
    assert path.name == "alex.pth" and path.parent.name == "v0.1"
    assert "lpips" not in sys.modules
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {f"lin{k}.model.1.weight" for k in range(5)} <= set(state)


def test_missing_trunk_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth") as info:
        get_metric("lpips")
    assert "ACTWM_WEIGHTS_DIR" in str(info.value) and "download.pytorch.org" in str(info.value)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        get_metric("controllability", net="vgg")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        get_metric("lpips", weights=tmp_path / "nope.pth")


def test_full_torchvision_checkpoint_and_bad_keys(tmp_path, monkeypatch):
    """A full checkpoint (features + classifier) loads; foreign keys are rejected naming the file."""
    _random_trunk_checkpoint("alex", tmp_path / "alexnet-owt-7be5be79.pth")
    state = torch.load(tmp_path / "alexnet-owt-7be5be79.pth", weights_only=True)
    for i, shape in ((1, (8, 8)), (4, (8, 8)), (6, (8, 8))):  # shapes are not used by LPIPS
        state[f"classifier.{i}.weight"], state[f"classifier.{i}.bias"] = torch.zeros(shape), torch.zeros(8)
    torch.save(state, tmp_path / "full.pth")
    LPIPS.from_pretrained("alex", weights=tmp_path / "full.pth")
    state["junk.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        LPIPS.from_pretrained("alex", weights=tmp_path / "bad.pth")
    del state["junk.weight"], state["features.0.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="short.pth"):
        LPIPS.from_pretrained("alex", weights=tmp_path / "short.pth")


def test_metric_from_weights_dir_and_controllability(tmp_path, monkeypatch):
    """Trunk found in $ACTWM_WEIGHTS_DIR (safetensors too); controllability = 1 - LPIPS per frame."""
    from safetensors.torch import save_file

    _random_trunk_checkpoint("alex", tmp_path / "a.pth")
    state = torch.load(tmp_path / "a.pth", weights_only=True)
    save_file(state, str(tmp_path / "alexnet-owt-7be5be79.safetensors"))
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path))
    lp, ctrl = get_metric("lpips"), get_metric("controllability")
    assert (lp.name, lp.kind, lp.higher_is_better) == ("lpips", "frame", False)
    assert (ctrl.name, ctrl.kind, ctrl.higher_is_better) == ("controllability", "frame", True)
    gt = torch.rand(4, 3, 48, 48)
    pred = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    d = lp(gt, pred)
    assert d.shape == (4,) and (d > 0).all()
    assert torch.allclose(ctrl(gt, pred), 1 - d, atol=1e-6)
    resized = get_metric("lpips", resize=64)(gt, pred)
    assert resized.shape == (4,) and not torch.allclose(resized, d)


def test_full_backbones_have_torchvision_keys():
    """AlexNet/VGG16 expose exactly torchvision's state-dict keys, so the official files load strictly."""
    from actwm.eval.backbones import VGG16, AlexNet

    with torch.device("meta"):
        alex, vgg = AlexNet(), VGG16()
    params = ("weight", "bias")
    expected_alex = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in params}
    expected_alex |= {f"classifier.{i}.{p}" for i in (1, 4, 6) for p in params}
    assert set(alex.state_dict()) == expected_alex
    assert tuple(alex.state_dict()["classifier.1.weight"].shape) == (4096, 9216)
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    expected_vgg = {f"features.{i}.{p}" for i in convs for p in params}
    expected_vgg |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in params}
    assert set(vgg.state_dict()) == expected_vgg
    assert tuple(vgg.state_dict()["classifier.0.weight"].shape) == (4096, 25088)
