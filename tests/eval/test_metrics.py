"""The metric registry (``actwm.eval.metrics``), the pixel metrics and FID."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actwm.eval.backbones import FIDInceptionV3
from actwm.eval.metrics import available_metrics, get_metric, resize_frames
from actwm.eval.pixel import PSNR_CAP_DB


def _pair(frames: int = 4, size: int = 32, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(frames, 3, size, size, generator=g)
    pred = (gt + noise * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return gt, pred


def test_registry():
    frame_and_set = ["psnr", "ssim", "lpips", "dreamsim", "fvd", "fid", "controllability"]
    assert available_metrics() == [*frame_and_set, "traj", "depth"]
    with pytest.raises(ValueError, match="available: psnr, ssim, lpips, dreamsim, fvd, fid, controllability, traj"):
        get_metric("mse")
    with pytest.raises(ValueError, match="unknown option.*'net'"):
        get_metric("psnr", net="alex")
    for name in ("psnr", "ssim"):
        m = get_metric(name)
        assert (m.name, m.kind, m.higher_is_better) == (name, "frame", True)


def test_psnr_per_frame_matches_formula():
    gt, pred = _pair()
    pred[1] = gt[1]  # an identical frame
    values = get_metric("psnr")(gt, pred)
    assert values.shape == (4,)
    for t in (0, 2, 3):
        mse = ((gt[t].double() - pred[t].double()) ** 2).mean().item()
        assert values[t].item() == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    assert values[1].item() == PSNR_CAP_DB == 100.0  # identical frames are capped, never inf
    assert get_metric("psnr", max_db=60.0)(gt, pred)[1].item() == 60.0
    assert torch.isfinite(values).all()


def test_ssim_per_frame():
    gt, pred = _pair(frames=3)
    pred[2] = (gt[2] + 0.3 * torch.randn_like(gt[2])).clamp(0, 1)
    values = get_metric("ssim")(gt, pred)
    assert values.shape == (3,)
    assert torch.allclose(get_metric("ssim")(gt, gt), torch.ones(3), atol=1e-5)
    assert 0 < values[2] < values[0] < 1
    with pytest.raises(ValueError, match="at least 11x11"):
        get_metric("ssim")(gt[:, :, :8, :8], pred[:, :, :8, :8])


def test_bad_inputs_name_shapes():
    gt, pred = _pair()
    with pytest.raises(ValueError, match=r"gt \(4, 3, 32, 32\) vs pred \(4, 3, 16, 16\)"):
        get_metric("psnr")(gt, pred[:, :, :16, :16])
    with pytest.raises(ValueError, match=r"gt \(4, 3, 32, 32\) vs pred \(3, 3, 32, 32\)"):
        get_metric("ssim")(gt, pred[:3])
    with pytest.raises(ValueError, match=r"\(frames, 3, H, W\), got \(3, 32, 32\)"):
        get_metric("psnr")(gt[0], pred[0])
    with pytest.raises(ValueError, match="float"):
        get_metric("psnr")((gt * 255).to(torch.uint8), (pred * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="resize"):
        get_metric("psnr", resize=2)


def test_resize_option():
    gt, pred = _pair(size=48)
    resized = get_metric("psnr", resize=24)(gt, pred)
    small_gt = F.interpolate(gt, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    small_pred = F.interpolate(pred, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    manual = get_metric("psnr")(small_gt.clamp(0, 1), small_pred.clamp(0, 1))
    assert torch.allclose(resized, manual, atol=1e-5)
    assert resized.mean() > get_metric("psnr")(gt, pred).mean()  # downsampling averages the noise away
    assert resize_frames(gt, 64).shape == (4, 3, 64, 64) and resize_frames(gt, None) is gt


# --------------------------------------------------------------------------------------------- FID


pytestmark = pytest.mark.usefixtures("flush_denormals")


@pytest.fixture(scope="module")
def fid_checkpoint(tmp_path_factory):
    """Random FID Inception saved like pytorch-fid's pt_inception-2015-12-05-6726825d.pth."""
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    return path


def _videos(n: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 40, 40, generator=g) * scale for _ in range(n)]


def test_fid_with_inception_weights(fid_checkpoint, monkeypatch):
    state = torch.load(fid_checkpoint, weights_only=True)
    assert tuple(state["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1008, 2048) and "AuxLogits.fc.weight" not in state
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(fid_checkpoint.parent))
    fid = get_metric("fid", resize=75)
    assert (fid.name, fid.kind, fid.higher_is_better) == ("fid", "set", False)
    gt, other = _videos(2, 1), _videos(2, 2, scale=0.3)
    assert fid(gt, [v.clone() for v in gt]) == pytest.approx(0.0, abs=1e-6)
    assert fid(gt, other) > 1e-3


def test_fid_pluggable_feature_and_errors(tmp_path, monkeypatch):
    class MeanColour(nn.Module):  # (batch, 3, H, W) -> (batch, 3)
        def forward(self, x):
            return x.mean(dim=(2, 3))

    fid = get_metric("fid", feature=MeanColour(), resize=None)
    gt = _videos(3, 1)
    shifted = [(v + 0.2).clamp(0, 1) for v in gt]
    assert fid(gt, gt) == pytest.approx(0.0, abs=1e-9)
    assert fid(gt, shifted) > 0.01
    with pytest.raises(ValueError, match="non-empty list"):
        fid([], gt)
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth") as info:
        get_metric("fid")
    assert "mseitzer/pytorch-fid" in str(info.value) and str(tmp_path) in str(info.value)


def test_set_metric_options_are_the_networks_own():
    """fvd/fid take their network's `from_pretrained` options (with its defaults) plus `device`, and pass them on."""
    options = ["weights", "hub", "resize", "feature", "batch_size", "device"]
    for name in ("fvd", "fid"):
        with pytest.raises(ValueError, match=re.escape(f"accepted: {options}")):
            get_metric(name, net="alex")
    feature = nn.Flatten()
    default = get_metric("fid", feature=feature, device="cpu").fn.__self__  # the FID behind `compute`
    assert (default.feature, default.resize, default.batch_size, default.device) == (
        feature,
        299,
        32,
        torch.device("cpu"),
    )
    chosen = get_metric("fid", feature=feature, resize=None, batch_size=5).fn.__self__
    assert (chosen.resize, chosen.batch_size) == (None, 5)


def test_weights_search_and_wrapped_checkpoints(tmp_path, monkeypatch):
    from actwm.eval.weights import find_weights, load_state_dict

    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "mine").mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "mine" / "net.pth")
    kwargs = dict(what="test net", source="https://example.org/net.pth")
    assert find_weights(["net.pth"], weights=tmp_path / "mine", **kwargs) == tmp_path / "mine" / "net.pth"
    assert torch.equal(load_state_dict(tmp_path / "mine" / "net.pth")["w"], torch.ones(2))  # unwrapped
    with pytest.raises(FileNotFoundError, match="net.pth.*example.org"):
        find_weights(["net.pth"], **kwargs)
    torch.save({"w": torch.zeros(1)}, tmp_path / "cache" / "net.pth")
    assert find_weights(["net.pth"], **kwargs) == tmp_path / "cache" / "net.pth"
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


@pytest.mark.parametrize("size", [32, 64, 128])
def test_ssim_is_scikit_image_valid_region_ssim(size):
    """Standard SSIM (Wang et al.; scikit-image): the map's valid region only, not a padded border."""
    import numpy as np
    from skimage.metrics import structural_similarity

    gt, pred = _pair(frames=3, size=size, noise=0.1, seed=size)
    pred[1] = (0.7 * gt[1] + 0.3 * torch.rand_like(gt[1])).clamp(0, 1)  # structure change, not only noise
    values = get_metric("ssim")(gt, pred)
    for t in range(3):
        ref = structural_similarity(
            gt[t].permute(1, 2, 0).double().numpy(),
            pred[t].permute(1, 2, 0).double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert values[t].item() == pytest.approx(ref, abs=1e-4)
    assert np.ptp(values.numpy()) > 0.01  # the frames differ enough for the check to mean something
