"""actwm.geometry: SE(2) algebra, angle wrapping at the boundary, pinhole projection, numpy == torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actwm.geometry import (
    backproject_depth,
    check_camera,
    project_points,
    se2_compose,
    se2_inverse,
    se2_relative,
    wrap_angle,
    wrap_angle_float32,
)


def _poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(n, 2)) * 3, rng.uniform(-np.pi, np.pi, n)])


def test_wrap_angle_boundary_is_minus_pi_like_nwm():
    a = np.array([np.pi, -np.pi, 3 * np.pi, -3 * np.pi, 0.1, -7.0, 2 * np.pi])
    w = wrap_angle(a)
    np.testing.assert_allclose(w[:4], -np.pi)  # [-pi, pi): +pi and odd multiples land on -pi
    np.testing.assert_allclose(w[4:], [0.1, 2 * np.pi - 7.0, 0.0], atol=1e-12)
    x = np.random.default_rng(0).uniform(-20, 20, 1000)
    w = wrap_angle(x)
    assert np.all(w >= -np.pi) and np.all(w < np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(x), atol=1e-9)
    np.testing.assert_allclose(np.sin(w), np.sin(x), atol=1e-9)
    wt = wrap_angle(torch.from_numpy(a))
    assert isinstance(wt, torch.Tensor)
    np.testing.assert_allclose(wt.numpy(), wrap_angle(a), atol=1e-12)


def test_wrap_angle_float32_stays_inside_after_the_cast():
    # float32(pi) > pi: a plain cast of -pi (or of pi - 1e-8) leaves [-pi, pi) and reads back on the other side
    a = np.array([-np.pi, np.pi, np.pi - 1e-8, -np.pi + 1e-8, 1.0])
    for w in (wrap_angle_float32(a), wrap_angle_float32(torch.from_numpy(a)).numpy()):
        assert w.dtype == np.float32
        back = w.astype(np.float64)
        assert np.all(back >= -np.pi) and np.all(back < np.pi)
        np.testing.assert_array_equal(wrap_angle(back), back)  # reading back does not flip the side
        np.testing.assert_allclose(back, [-np.pi, -np.pi, np.pi, -np.pi, 1.0], atol=3e-7)


def test_se2_by_hand():
    # forward 1 m, turn left 90 deg; then 1 m forward in the new heading: (1, 1, pi/2)
    np.testing.assert_allclose(se2_compose(np.array([1.0, 0, np.pi / 2]), np.array([1.0, 0, 0])), [1, 1, np.pi / 2])
    # the inverse is the world origin seen from the robot: at (2, 1) facing +y it is 1 m behind, 2 m to the left
    np.testing.assert_allclose(se2_inverse(np.array([2.0, 1.0, np.pi / 2])), [-1.0, 2.0, -np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(se2_inverse(np.array([2.0, 1.0, 0.0])), [-2.0, -1.0, 0.0], atol=1e-12)
    # the world point (0, 3) seen from a robot at (0, 1) facing +y: 2 m straight ahead, heading unchanged
    np.testing.assert_allclose(
        se2_relative(np.array([0.0, 1.0, np.pi / 2]), np.array([0.0, 3.0, np.pi / 2])), [2, 0, 0], atol=1e-12
    )


def test_se2_round_trips_and_torch_equals_numpy():
    a, b = _poses(50, 1), _poses(50, 2)
    ab = se2_compose(a, b)
    np.testing.assert_allclose(se2_compose(a, se2_inverse(a)), 0.0, atol=1e-12)
    np.testing.assert_allclose(se2_compose(se2_inverse(a), a), 0.0, atol=1e-12)
    np.testing.assert_allclose(se2_relative(a, ab), b, atol=1e-12)  # relative undoes compose
    np.testing.assert_allclose(se2_compose(a, se2_relative(a, b)), b, atol=1e-12)
    c = _poses(50, 3)
    np.testing.assert_allclose(se2_compose(se2_compose(a, b), c), se2_compose(a, se2_compose(b, c)), atol=1e-12)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for f, args, targs in (
        (se2_compose, (a, b), (ta, tb)),
        (se2_inverse, (a,), (ta,)),
        (se2_relative, (a, b), (ta, tb)),
    ):
        out = f(*targs)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        np.testing.assert_allclose(out.numpy(), f(*args), atol=1e-12)


def _camera() -> tuple[np.ndarray, np.ndarray]:
    k = np.array([[100.0, 0.0, 32.0], [0.0, 120.0, 24.0], [0.0, 0.0, 1.0]])
    e = np.eye(4)
    e[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # world -> camera: 90 deg about z
    e[:3, 3] = [0.0, 0.0, 1.0]
    return k, e


def test_projection_by_hand():
    k, e = _camera()
    # world (1, 2, 3) -> camera R p + t = (-2, 1, 4) -> u = 100 * -2/4 + 32 = -18, v = 120 * 1/4 + 24 = 54
    pts = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    uv, z = project_points(pts, k, e)
    np.testing.assert_allclose(uv, [[-18.0, 54.0], [32.0, 24.0]], atol=1e-12)
    np.testing.assert_allclose(z, [4.0, 2.0])
    # batched leading axes broadcast; torch gives the same
    uv_b, z_b = project_points(np.stack([pts, pts * 2]), np.stack([k, k]), np.stack([e, e]))
    np.testing.assert_allclose(uv_b[0], uv)
    uv_t, z_t = project_points(torch.from_numpy(pts), torch.from_numpy(k), torch.from_numpy(e))
    np.testing.assert_allclose(uv_t.numpy(), uv, atol=1e-12)
    np.testing.assert_allclose(z_t.numpy(), z)


def test_backprojection_inverts_projection():
    k, e = _camera()
    depth = np.random.default_rng(4).uniform(0.5, 5.0, (6, 8))
    cam = backproject_depth(depth, k)  # camera-frame points through the pixel centres
    world = (cam.reshape(-1, 3) - e[:3, 3]) @ e[:3, :3]  # camera -> world with the inverse extrinsics
    uv, z = project_points(world, k, e)
    v, u = np.mgrid[0:6, 0:8]
    np.testing.assert_allclose(uv, np.column_stack([u.ravel(), v.ravel()]), atol=1e-9)
    np.testing.assert_allclose(z, depth.ravel(), atol=1e-12)
    cam_t = backproject_depth(torch.from_numpy(depth), torch.from_numpy(k))
    np.testing.assert_allclose(cam_t.numpy(), cam, atol=1e-12)


def test_check_camera_rejects_bad_calibration():
    k, e = _camera()
    check_camera(k, e)
    bad_k = {
        "fx <= 0": np.diag([-1.0, 1.0, 1.0]),
        "last row": np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.5, 1.0]]),
        "NaN": np.full((3, 3), np.nan),
        "shape": np.eye(4),
    }
    for what, bad in bad_k.items():
        with pytest.raises(ValueError, match="cam0"):
            check_camera(bad, e, what="cam0")
    mirror = e.copy()
    mirror[:3, 0] *= -1  # det -1
    scaled = e.copy()
    scaled[:3, :3] *= 2  # not orthonormal
    last = e.copy()
    last[3] = [0, 0, 1, 1]
    for bad in (mirror, scaled, last):
        with pytest.raises(ValueError, match="cam1: extrinsics"):
            check_camera(k, bad, what="cam1")
