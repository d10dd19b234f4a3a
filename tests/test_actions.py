"""actwm.actions: clip transforms (torch-first, numpy accepted), delta <-> cumulative, normalisers, and the
rollout's conversion staying on the device."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from actwm.actions import (
    ActionNormaliser,
    compose_steps,
    cumulative_to_delta,
    delta_to_cumulative,
    delta_to_frame0_delta,
    gather_windows,
    get_action_space,
    transform_actions,
)


def _steps(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """`(b, n, 3)` random nav3 per-step motions."""
    return rng.normal(size=(b, n, 3)) * [0.3, 0.1, 0.8]


def test_cumulative_is_the_chain_of_poses_by_hand():
    # forward 1 m turning +90 deg, then forward 1 m, then turn -90 deg: poses (0,0,0), (1,0,pi/2), (1,1,pi/2)
    d = np.array([[[1.0, 0.0, np.pi / 2], [1.0, 0.0, 0.0], [0.0, 0.0, -np.pi / 2]]])
    c = delta_to_cumulative(d, "nav3")
    np.testing.assert_allclose(c[0], [[0, 0, 0], [1, 0, np.pi / 2], [1, 1, np.pi / 2]], atol=1e-12)
    # NWM's frame-0 deltas: differences of those poses, not motions in each step's frame
    f0 = delta_to_frame0_delta(d, "nav3")
    np.testing.assert_allclose(f0[0], [[1, 0, np.pi / 2], [0, 1, 0], [0, 0, -np.pi / 2]], atol=1e-12)
    # sums for a plain space; absolute dims (ee7 gripper) take the value that led to the frame
    ee = np.zeros((1, 3, 7))
    ee[0, :, 0] = [0.1, 0.2, 0.3]
    ee[0, :, 6] = [1.0, 0.0, 1.0]
    ce = delta_to_cumulative(ee, "ee7")[0]
    np.testing.assert_allclose(ce[:, 0], [0.0, 0.1, 0.3])
    np.testing.assert_allclose(ce[:, 6], [0.0, 1.0, 0.0])


@pytest.mark.parametrize("space", ["nav3", "custom3", "ee7"])
def test_delta_cumulative_round_trip(space):
    rng = np.random.default_rng(1)
    dim = 7 if space == "ee7" else 3
    d = rng.normal(size=(4, 6, dim))
    d[..., 2] = np.clip(d[..., 2], -3.0, 3.0)
    back = cumulative_to_delta(delta_to_cumulative(d, space), space)
    np.testing.assert_allclose(back[:, :-1], d[:, :-1], atol=1e-12)  # the last delta looks past the clip
    np.testing.assert_array_equal(back[:, -1], 0.0)


def test_torch_equals_numpy_and_keeps_kind():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(30, 3)) * [0.3, 0.1, 1.5]
    starts = np.array([0, 5, 22])
    w, v = gather_windows(raw, starts, 4, 3)
    wt, vt = gather_windows(torch.from_numpy(raw), torch.from_numpy(starts), 4, 3)
    assert isinstance(w, np.ndarray) and isinstance(wt, torch.Tensor)
    assert v[2].tolist() == [[True] * 3, [True] * 3, [True, True, False], [False] * 3]  # row 30 is past T=30
    np.testing.assert_array_equal(wt.numpy(), w)
    for mode in ("delta", "cumulative", "frame0_delta"):
        a = transform_actions(w, v, "nav3", mode)
        t = transform_actions(wt, vt, "nav3", mode)
        assert isinstance(a, np.ndarray) and isinstance(t, torch.Tensor) and t.dtype == torch.float64
        np.testing.assert_allclose(t.numpy(), a, atol=1e-12)
    # a clip step composed from 3 stored rows equals the motion between the two frames, by composition
    one = compose_steps(torch.from_numpy(w[:1, :1]), torch.from_numpy(v[:1, :1]), "nav3")[0, 0]
    by_hand = delta_to_cumulative(raw[None, :4], "nav3")[0, 3]
    np.testing.assert_allclose(one.numpy(), by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="convention"):
        transform_actions(w, v, "nav3", "absolute")


def test_normalisers_round_trip_and_save():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3))
    norms = [
        ActionNormaliser.build("std", "delta", 3, mean=[0.1, -0.2, 0.0], std=[0.5, 2.0, 1.0]),
        ActionNormaliser.build("none", "cumulative", 3),
        ActionNormaliser.build("nwm", "cumulative", 3, metric_spacing=0.25),
        ActionNormaliser.build("nwm", "delta", 3, metric_spacing=0.25),
        ActionNormaliser.build("nwm_scale", "delta", 3, metric_spacing=0.25),
    ]
    for n in norms:
        y = n.normalise(torch.from_numpy(x))
        assert isinstance(y, torch.Tensor)
        np.testing.assert_allclose(n.denormalise(y).numpy(), x, atol=1e-12)
        np.testing.assert_allclose(n.normalise(x), y.numpy(), atol=0)  # numpy in, numpy out, same values
        assert ActionNormaliser.from_dict(n.to_dict()) == n
    std, _, cum, nwm, scale = norms
    np.testing.assert_allclose(std.normalise(x), (x - [0.1, -0.2, 0.0]) / [0.5, 2.0, 1.0])
    # NWM's normalize_data: xy / 0.25, then (v - min) / (max - min) * 2 - 1; yaw unchanged
    expect = (x[..., :2] / 0.25 - [-2.5, -4.0]) / [7.5, 8.0] * 2 - 1
    np.testing.assert_allclose(cum.normalise(x)[..., :2], expect, atol=1e-12)
    np.testing.assert_allclose(cum.normalise(x)[..., 2], x[..., 2])
    # NWM's delta: scale only, except row 0 which keeps normalize_data(0) = (-1/3, 0)
    got = nwm.normalise(x)
    np.testing.assert_allclose(got[..., 1:, :2], x[..., 1:, :2] / 0.25 * 2 / [7.5, 8.0], atol=1e-12)
    np.testing.assert_allclose(got[..., 0, :2], x[..., 0, :2] / 0.25 * 2 / [7.5, 8.0] + [-1 / 3, 0.0], atol=1e-12)
    np.testing.assert_allclose(scale.normalise(x)[..., :2], x[..., :2] / 0.25 * 2 / [7.5, 8.0], atol=1e-12)
    assert nwm.convention == "frame0_delta" and scale.convention == "delta" and cum.convention == "cumulative"
    assert std.mean == (0.1, -0.2, 0.0) and cum.is_affine and not nwm.is_affine
    with pytest.raises(ValueError, match="row 0"):
        _ = nwm.mean
    with pytest.raises(ValueError, match="nav3"):
        ActionNormaliser.build("nwm", "delta", 7, metric_spacing=0.25)
    with pytest.raises(ValueError, match="malformed"):
        ActionNormaliser.from_dict({"kind": "std"})


def test_rollout_conversion_stays_in_torch(monkeypatch):
    from actwm.rollout import rollout as rollout_mod

    class _Cfg:
        action_mode = "cumulative"

    class _Model:  # the two fields to_model_actions reads
        action_space = get_action_space("nav3").with_stats([0.1, 0.0, 0.0], [0.5, 0.5, 1.0])
        config = _Cfg()

    raw = torch.from_numpy(_steps(np.random.default_rng(4), 2, 6)).float()
    expect = _Model.action_space.normalise(torch.from_numpy(delta_to_cumulative(raw.double().numpy(), "nav3")).float())

    def no_host(*args, **kwargs):
        raise AssertionError("to_model_actions left torch (numpy or host copy)")

    monkeypatch.setattr(torch.Tensor, "numpy", no_host)
    monkeypatch.setattr(torch.Tensor, "cpu", no_host)
    got = rollout_mod.to_model_actions(_Model(), raw)
    assert got.dtype == torch.float32 and got.device == raw.device
    torch.testing.assert_close(got, expect, atol=1e-6, rtol=0)


def test_importing_rollout_pulls_no_data_layer():
    code = "import actwm.rollout.rollout, sys; print('pyarrow' in sys.modules, 'actwm.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
