"""Action recovery from KVAF frames (EA-WM 4.4): end-effector pixel, pose and gripper opening back to numbers."""

from __future__ import annotations

import numpy as np
import pytest

from actwm.robots.kinematics import ArmKinematics, ArmPose
from actwm.robots.recover import (
    RecoveryConfig,
    axis_tips,
    gripper_opening,
    heatmap_centre,
    recover_kvaf,
    recovery_errors,
)
from actwm.robots.render import RenderConfig, render_kvaf
from actwm.robots.spec import ROBOTS
from actwm.sim.common import PinholeCamera, look_at_extrinsics
from actwm.sim.manip import ManipConfig

SIZE = 128
_REST = np.array([0.006, 0.413, -0.011, -1.589, 0.005, 1.138, -0.007])


@pytest.fixture(scope="module")
def scene():
    """40 random arm configurations near the manip reset pose, random openings, rendered by the manip camera."""
    rng = np.random.default_rng(7)
    mc = ManipConfig()
    k = PinholeCamera(SIZE, SIZE, mc.fov_deg, near=0.05, far=6.0).intrinsics
    e = look_at_extrinsics(mc.camera_eye, mc.camera_target)
    robot = ROBOTS["manip"]
    with ArmKinematics(robot) as kin:
        pose = kin.forward(_REST + rng.normal(0.0, 0.2, (40, 7)), rng.uniform(0.0, 1.0, 40))
    cfg = RenderConfig(SIZE, SIZE)
    frames, marks = render_kvaf([pose], k, e, cfg, [robot.gripper])
    return pose, k, e, cfg, frames, marks


def test_recovery_returns_the_rendered_actions(scene):
    pose, k, e, cfg, frames, marks = scene
    rec = recover_kvaf(frames, k, e, cfg, ROBOTS["manip"].gripper)
    ee = np.array([m["ee"] if m["ee"] is not None else [np.nan, np.nan] for m in marks])
    visible = ((ee >= 10) & (ee < SIZE - 10)).all(1)
    assert visible.sum() >= 25
    rates = {name: det[visible].mean() for name, det in rec.detected.items()}
    assert rates["heatmap"] == 1.0 and rates["axes"] >= 0.8 and rates["gripper"] >= 0.7, rates
    err = recovery_errors(rec, pose, k, e)
    assert err["pixel_error"] < 0.1  # heatmap centre vs the projected end-effector (px)
    both = rec.detected["heatmap"] & visible
    assert np.abs(rec.ee_uv[both] - ee[both]).max() < 1.0
    assert err["translation_error"] < 0.03  # metres (depth from the axis lengths)
    assert err["rotation_error"] < 0.1  # radians
    assert err["gripper_error"] < 0.1
    assert set(err["detection_rate"]) == {"heatmap", "axes", "gripper", "all"}


def test_recovery_reports_missing_cues(scene):
    pose, k, e, cfg, frames, _ = scene
    blank = np.zeros_like(frames[:3])
    rec = recover_kvaf(blank, k, e, cfg, ROBOTS["manip"].gripper)
    assert not any(d.any() for d in rec.detected.values()) and np.isnan(rec.ee_pos).all()
    assert rec.detection_rate()["all"] == 0.0
    # without its axes, a frame still gives the end-effector pixel but no pose
    no_axes, _ = render_kvaf([pose], k, e, RenderConfig(SIZE, SIZE, axes=False), [ROBOTS["manip"].gripper])
    rec = recover_kvaf(no_axes[:10], k, e, cfg, ROBOTS["manip"].gripper)
    assert rec.detected["heatmap"].any() and not rec.detected["axes"].any()
    assert heatmap_centre(frames[0] * 0, cfg.sigma_px, RecoveryConfig()) is None
    assert axis_tips(no_axes[0], np.array([64.0, 64.0]), cfg.thickness) is None
    with pytest.raises(ValueError, match="frames must be uint8"):
        recover_kvaf(frames.astype(np.float32), k, e, cfg, None)


def test_gripper_seen_edge_on_is_not_detected():
    """Fingers opening along the viewing ray look the same at every opening: no reading rather than a guess."""
    k = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    e = np.eye(4)
    rot = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])  # columns: ee x along the ray, ee z (fingers) down
    pos = np.array([0.0, -0.1, 1.0])
    pose = ArmPose(pos[None], np.zeros((1, 0, 3)), pos[None], rot[None], np.array([0.7]))
    cfg = RenderConfig(SIZE, SIZE)
    frame, _ = render_kvaf([pose], k, e, cfg, [ROBOTS["manip"].gripper])
    assert (frame[0].min(-1) >= 200).sum() > 10  # the gripper is drawn
    assert gripper_opening(frame[0], pos, rot, k, e, ROBOTS["manip"].gripper, cfg.thickness) is None
    # turned so the fingers open across the image (ee x = image right, ee z = image down)
    side = np.stack([np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), np.array([0, 1.0, 0])], 1)
    frame, _ = render_kvaf(
        [ArmPose(pos[None], np.zeros((1, 0, 3)), pos[None], side[None], np.array([0.7]))],
        k,
        e,
        cfg,
        [ROBOTS["manip"].gripper],
    )
    assert gripper_opening(frame[0], pos, side, k, e, ROBOTS["manip"].gripper, cfg.thickness) == pytest.approx(
        0.7, abs=0.06
    )
