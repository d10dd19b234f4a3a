"""Depth accuracy: AbsRel maths, real transformers loading of tiny weights in the official layout, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actwm.eval import depth_accuracy as da
from actwm.eval.depth_accuracy import DepthNetwork, abs_rel_median, resolve_depth_model, worldarena_depth_score
from actwm.eval.engine import evaluate
from actwm.eval.metrics import get_metric


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny random Depth-Anything saved with transformers' own `save_pretrained` (official layout)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=24,
        image_size=28,
        patch_size=14,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=4,
        patch_size=14,
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # unit-gain weights and a bias: a positive output, far from 1, varying over the image
        for param in model.parameters():
            if param.ndim > 1:
                param.normal_(0.0, 1.0 / math.sqrt(param[0].numel()))
        model.head.conv3.bias.fill_(3.0)
    path = tmp_path_factory.mktemp("tiny_depth_anything")
    model.save_pretrained(path)
    DPTImageProcessor(
        size={"height": 28, "width": 28},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_pad=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)
    return path


def test_abs_rel_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = np.array([[2.0, 4.0], [8.0, 20.0]])
    # medians 3 and 6 -> scale 0.5 -> [1, 2, 4, 10]: errors 0, 0, 0, 2/8 -> mean 0.0625
    assert abs_rel_median(gt, pred) == pytest.approx(0.0625)
    assert abs_rel_median(gt, 7.0 * gt) == pytest.approx(0.0)  # scale-invariant
    # an invalid ground-truth pixel (0 m) is left out: medians of [2, 4, 8] and [4, 8, 20] -> scale 0.5
    gt0 = np.array([[0.0, 2.0], [4.0, 8.0]])
    assert abs_rel_median(gt0, pred) == pytest.approx((0 + 0 + 2 / 8) / 3)
    assert worldarena_depth_score(0.2228) == 1.0 and worldarena_depth_score(5.0) == 0.0


def test_loads_official_layout_and_matches_transformers(tiny_weights):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    assert sorted(p.name for p in tiny_weights.iterdir()) == sorted(da.REQUIRED_FILES)
    net = DepthNetwork(resolve_depth_model(weights=tiny_weights))
    frames = np.random.default_rng(0).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    raw = net(frames)
    assert raw.shape == (3, 20, 30) and net.kind == "relative" and (raw > 0).all()
    assert raw.std(axis=(1, 2)).min() > 0.05 and abs(raw.mean() - 1.0) > 0.5  # a test network that varies
    proc = AutoImageProcessor.from_pretrained(tiny_weights)
    model = AutoModelForDepthEstimation.from_pretrained(tiny_weights).eval()
    with torch.no_grad():
        out = model(**proc(images=list(frames), return_tensors="pt"))
    ref = proc.post_process_depth_estimation(out, target_sizes=[(20, 30)] * 3)
    assert np.allclose(raw, np.stack([r["predicted_depth"].numpy() for r in ref]), atol=1e-6)
    assert np.allclose(net.depth(frames), 1.0 / raw)  # relative models predict inverse depth


def test_depth_in_evaluate_matches_hand_computation(tiny_weights):
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 3.0, (5, 20, 30))
    res = evaluate(
        gt, pred, depth=depth, metrics=["depth"], horizons=[2, 4], progress=False,
        metric_options={"depth": {"weights": str(tiny_weights)}},
    )  # fmt: skip
    net = DepthNetwork(tiny_weights)
    predicted = 1.0 / net(pred[1:5])
    by_hand = []
    for g, p in zip(depth[1:5], predicted):
        s = np.median(g) / np.median(p)
        by_hand.append(np.mean(np.abs(s * p - g) / g))
    assert res["aggregate"]["depth"]["2"] == pytest.approx(np.mean(by_hand[:2]), rel=1e-6)
    assert res["aggregate"]["depth"]["4"] == pytest.approx(np.mean(by_hand), rel=1e-6)
    assert res["aggregate_at"]["depth"]["4"] == pytest.approx(by_hand[3], rel=1e-6)
    info = res["sequences"]["seq000"]["depth_info"]
    assert info["sha256"] == net.sha256 and info["reference"] == "sim"
    assert res["meta"]["higher_is_better"]["depth"] is False
    with pytest.raises(ValueError, match="depth needs the ground-truth depth"):
        evaluate(gt, pred, metrics=["depth"], horizons=[2], progress=False,
                 metric_options={"depth": {"weights": str(tiny_weights)}})  # fmt: skip


def test_missing_weights_name_what_to_provide(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(da, "HUB_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(FileNotFoundError) as err:
        get_metric("depth")
    msg = str(err.value)
    assert "depth-anything/Depth-Anything-V2-Small-hf" in msg and "ACTWM_WEIGHTS_DIR" in msg
    assert "model.safetensors" in msg and str(tmp_path / "weights" / da.LOCAL_DIR_NAME) in msg
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        get_metric("depth", hub="depth-anything/Depth-Anything-V2-Small-hf")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text(json.dumps({}))
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors, preprocessor_config.json"):
        get_metric("depth", weights=str(tmp_path / "partial"))


def test_refuses_weights_that_leave_parameters_random(tiny_weights, tmp_path):
    for name in da.REQUIRED_FILES:
        (tmp_path / name).write_bytes((tiny_weights / name).read_bytes())
    state = load_file(str(tmp_path / "model.safetensors"))
    dropped = sorted(k for k in state if k.startswith("head."))[0]
    del state[dropped]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="randomly initialised"):
        DepthNetwork(tmp_path)


def test_local_weights_dir_is_found(tiny_weights, tmp_path, monkeypatch):
    local = tmp_path / da.LOCAL_DIR_NAME
    local.mkdir()
    for name in da.REQUIRED_FILES:
        (local / name).write_bytes((tiny_weights / name).read_bytes())
    monkeypatch.setenv("ACTWM_WEIGHTS_DIR", str(tmp_path))
    assert resolve_depth_model() == local


def test_worldarena_reference_is_the_network_on_the_ground_truth(tiny_weights):
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    opts = {"depth": {"weights": str(tiny_weights), "reference": "network"}}
    res = evaluate(gt, pred, metrics=["depth"], horizons=[3], progress=False, metric_options=opts)  # no depth file
    net = DepthNetwork(tiny_weights)
    ref, out = net(gt[1:4]), net(pred[1:4])  # raw outputs compared, as WorldArena does
    by_hand = [np.mean(np.abs(o * np.median(r) / np.median(o) - r) / r) for r, o in zip(ref, out)]
    assert res["aggregate"]["depth"]["3"] == pytest.approx(np.mean(by_hand), rel=1e-6)
    same = evaluate(gt, gt.copy(), metrics=["depth"], horizons=[3], progress=False, metric_options=opts)
    assert same["aggregate"]["depth"]["3"] == pytest.approx(0.0, abs=1e-12)
