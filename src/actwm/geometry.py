"""Planar (SE(2)) motion and pinhole-camera geometry: the one home of both.

Ground floor: imports nothing from actwm. Every function takes numpy arrays or torch tensors and returns
the same kind (torch in, torch out, on the input's device and dtype), so data loading, training, rollouts
and planners share one definition.

Conventions:
- Angles wrap to `[-pi, pi)` (NWM's and numpy's `(a + pi) % 2pi - pi`).
- A planar pose / motion is `(..., 3)` = (x, y, yaw): x forward, y left, yaw counter-clockwise.
- Cameras follow OpenCV: intrinsics `K` `(3, 3)`, extrinsics `E` `(4, 4)` world-to-camera, camera axes
  x right, y down, z forward; pixel `(u, v)` = (column, row) with integer values at pixel centres.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)
# the largest float32 below pi (float32(pi) = 3.14159274 > pi)
_PI32_INSIDE = float(np.nextafter(np.float32(np.pi), np.float32(0)))


def _lib(x: np.ndarray | torch.Tensor):
    return torch if isinstance(x, torch.Tensor) else np


def wrap_angle(a: Array) -> Array:
    """Wrap radians to `[-pi, pi)`; same shape and kind as `a` (python floats come back as numpy)."""
    if isinstance(a, torch.Tensor):
        return torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    return np.mod(np.asarray(a, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi


def wrap_angle_float32(a: Array) -> Array:
    """Wrap radians to `[-pi, pi)` and round to float32 without leaving that range.

    `float32(pi)` is larger than pi, so a wrapped angle within 1e-7 of -pi (or just below +pi) would round to
    a float32 outside `[-pi, pi)` and wrap to the other side when read back (a 2 pi jump); such values become
    the nearest float32 inside the range (+-3.1415925). Same kind as `a` (float32).
    """
    if isinstance(a, torch.Tensor):
        w = wrap_angle(a.double()).float()
        return w.clamp(-_PI32_INSIDE, _PI32_INSIDE)
    w = wrap_angle(a).astype(np.float32)
    return np.clip(w, np.float32(-_PI32_INSIDE), np.float32(_PI32_INSIDE))


def se2_compose(a: Array, b: Array) -> Array:
    """Compose planar motions `(..., 3)`: first `a`, then `b` expressed in the frame reached by `a`."""
    xp = _lib(a)
    c, s = xp.cos(a[..., 2]), xp.sin(a[..., 2])
    x = a[..., 0] + c * b[..., 0] - s * b[..., 1]
    y = a[..., 1] + s * b[..., 0] + c * b[..., 1]
    return xp.stack([x, y, wrap_angle(a[..., 2] + b[..., 2])], -1)


def se2_inverse(a: Array) -> Array:
    """The motion `(..., 3)` that undoes `a`: `se2_compose(a, se2_inverse(a)) == 0`."""
    xp = _lib(a)
    c, s = xp.cos(a[..., 2]), xp.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = s * a[..., 0] - c * a[..., 1]
    return xp.stack([x, y, wrap_angle(-a[..., 2])], -1)


def se2_relative(a: Array, b: Array) -> Array:
    """Pose `b` `(..., 3)` expressed in the frame of pose `a` `(..., 3)` (both in one world frame)."""
    return se2_compose(se2_inverse(a), b)


def project_points(points: Array, intrinsics: Array, extrinsics: Array) -> tuple[Array, Array]:
    """World points `(..., N, 3)` -> pixel coordinates `(..., N, 2)` as (u, v), and camera z-depth `(..., N)`.

    `intrinsics` `(..., 3, 3)`, `extrinsics` `(..., 4, 4)` world-to-camera (batched leading axes broadcast).
    Points at or behind the camera (z <= 0) get non-finite or meaningless (u, v): callers drop them by depth.
    """
    xp = _lib(points)
    if xp is np:
        points = np.asarray(points, dtype=np.float64)
        intrinsics = np.asarray(intrinsics, dtype=np.float64)
        extrinsics = np.asarray(extrinsics, dtype=np.float64)
    rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    cam = points @ xp.swapaxes(rot, -1, -2) + trans[..., None, :]
    uvw = cam @ xp.swapaxes(intrinsics, -1, -2)
    z = uvw[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / z
    return uv, cam[..., 2]


def backproject_depth(depth: Array, intrinsics: Array) -> Array:
    """Depth `(H, W)` -> camera-frame points `(H, W, 3)` through pixel centres (OpenCV axes and pixels)."""
    xp = _lib(depth)
    h, w = depth.shape
    if xp is np:
        k = np.asarray(intrinsics, dtype=np.float64)
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        depth = depth.astype(np.float64)
    else:
        k = intrinsics.to(depth.dtype)
        v, u = torch.meshgrid(
            torch.arange(h, dtype=depth.dtype, device=depth.device),
            torch.arange(w, dtype=depth.dtype, device=depth.device),
            indexing="ij",
        )
    x = (u - k[0, 2]) / k[0, 0] * depth
    y = (v - k[1, 2]) / k[1, 1] * depth
    return xp.stack([x, y, depth], -1)


def check_camera(intrinsics: np.ndarray, extrinsics: np.ndarray, what: str = "camera") -> None:
    """Raise ValueError naming `what` unless `K` is a finite pinhole matrix and `E` a rigid world-to-camera."""
    k, e = np.asarray(intrinsics, dtype=np.float64), np.asarray(extrinsics, dtype=np.float64)
    if k.shape != (3, 3) or e.shape != (4, 4):
        raise ValueError(f"{what}: intrinsics must be (3, 3) and extrinsics (4, 4), got {k.shape} and {e.shape}")
    if not (np.isfinite(k).all() and np.isfinite(e).all()):
        raise ValueError(f"{what}: intrinsics / extrinsics hold NaN or inf")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]) or k[1, 0] != 0:
        raise ValueError(f"{what}: intrinsics are not a pinhole projection (fx, fy > 0, last row [0, 0, 1]): {k}")
    rot = e[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or not np.isclose(np.linalg.det(rot), 1.0, atol=1e-4):
        raise ValueError(f"{what}: extrinsics rotation is not orthonormal with det +1")
    if not np.allclose(e[3], [0, 0, 0, 1]):
        raise ValueError(f"{what}: extrinsics last row must be [0, 0, 0, 1], got {e[3]}")
