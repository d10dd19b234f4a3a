"""KVAF rendering: landmarks and heatmap against pybullet's own link states, occlusion order, bad input."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from actwm.robots.kinematics import ArmKinematics, ArmPose
from actwm.robots.render import RenderConfig, gripper_points, palette, render_kvaf
from actwm.robots.spec import ROBOTS, RobotSpec
from actwm.sim.manip import ARM_JOINTS, EE_LINK, ManipEnv

SIZE = 128


@pytest.fixture(scope="module")
def manip():
    env = ManipEnv(size=SIZE)
    env.reset(seed=3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def kin():
    with ArmKinematics(ROBOTS["manip"]) as k:
        yield k


def _reference(env: ManipEnv, q: np.ndarray) -> np.ndarray:
    """Pixels of pybullet's own link frame origins (links 0..6) for joints q, projected by hand with K and E."""
    for j, v in zip(ARM_JOINTS, q):
        p.resetJointState(env.robot, j, float(v), physicsClientId=env.client)
    pts = [
        p.getLinkState(env.robot, j, computeForwardKinematics=True, physicsClientId=env.client)[4] for j in ARM_JOINTS
    ]
    k = env.camera.intrinsics.astype(np.float64)
    e = env.extrinsics.astype(np.float64)
    cam = (e @ np.c_[np.asarray(pts), np.ones(len(pts))].T)[:3]
    assert (cam[2] > 0).all()
    pix = k @ cam
    return (pix[:2] / pix[2]).T


def _random_configs(n: int, seed: int = 0) -> np.ndarray:
    """Half anywhere within 70% of the joint limits, half near the sim's reset pose (end-effector in view)."""
    rng = np.random.default_rng(seed)
    lim = np.array([2.967, 2.094, 2.967, 2.094, 2.967, 2.094, 3.054])
    rest = np.array([0.006, 0.413, -0.011, -1.589, 0.005, 1.138, -0.007])
    wide = rng.uniform(-0.7, 0.7, (n - n // 2, 7)) * lim
    return np.concatenate([wide, rest + rng.normal(0.0, 0.25, (n // 2, 7))])


def _blob_centre(img: np.ndarray, uv: np.ndarray, r: int) -> np.ndarray:
    """Intensity-weighted centre of the drawn pixels within r of the rounded reference uv."""
    h, w = img.shape[:2]
    u0, v0 = int(round(uv[0])), int(round(uv[1]))
    ys, xs = np.mgrid[max(0, v0 - r) : min(h, v0 + r + 1), max(0, u0 - r) : min(w, u0 + r + 1)]
    wgt = img[ys, xs].astype(np.float64).sum(-1)
    return np.array([(wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()])


def test_landmarks_and_heatmap_match_pybullet(manip, kin):
    qs = _random_configs(12)
    ref = np.stack([_reference(manip, q) for q in qs])  # (T, 7, 2)
    k, e = manip.camera.intrinsics, manip.extrinsics
    pose = kin.forward(qs)
    _, marks = render_kvaf([pose], k, e, RenderConfig(SIZE, SIZE))
    joints = np.array([m["joints"] for m in marks], dtype=np.float64)
    ee = np.array([m["ee"] for m in marks], dtype=np.float64)
    assert np.abs(joints - ref).max() < 0.01  # measured ~1e-5 px; the issue asks for 1 px
    assert np.abs(ee - ref[:, EE_LINK]).max() < 0.01
    # the drawn pixels: heatmap peak and isolated landmark dots land within 1 px of the reference
    only = dict(skeleton=False, landmarks=False, gripper=False, heatmap=False, axes=False)
    heat, _ = render_kvaf([pose], k, e, RenderConfig(SIZE, SIZE, **{**only, "heatmap": True}))
    dots, _ = render_kvaf([pose], k, e, RenderConfig(SIZE, SIZE, **{**only, "landmarks": True}))
    checked = {"heatmap": 0, "dots": 0}
    r = RenderConfig(SIZE, SIZE).radius
    for t in range(len(qs)):
        u, v = ref[t, EE_LINK]
        if 8 <= u < SIZE - 8 and 8 <= v < SIZE - 8:
            peak = np.unravel_index(np.argmax(heat[t, ..., 0]), heat.shape[1:3])
            assert abs(peak[1] - u) <= 1.0 and abs(peak[0] - v) <= 1.0
            assert np.abs(_blob_centre(heat[t], ref[t, EE_LINK], 6) - ref[t, EE_LINK]).max() < 1.0
            checked["heatmap"] += 1
        for j in range(6):  # link 6 is the ee itself (drawn under the same point)
            others = np.delete(ref[t], j, 0)
            uv = ref[t, j]
            inside = (r + 2 <= uv).all() and (uv < SIZE - r - 2).all()
            if inside and np.linalg.norm(others - uv, axis=1).min() > 2 * r + 3:
                assert np.abs(_blob_centre(dots[t], uv, r + 1) - uv).max() < 1.0
                checked["dots"] += 1
    assert checked["heatmap"] >= 3 and checked["dots"] >= 5, checked


def _pose(points: list[tuple[float, float, float]]) -> ArmPose:
    pts = np.asarray(points, dtype=np.float64)[None]
    return ArmPose(root=pts[:, 0], joints=pts[:, 1:-1], ee_pos=pts[:, -1], ee_rot=np.eye(3)[None])


_K = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
_E = np.eye(4)  # camera at the origin looking along +z


def test_nearer_link_drawn_over_farther_one():
    cfg = RenderConfig(
        SIZE, SIZE, depth_mode="absolute", depth_range=(1.0, 3.0), landmarks=False, heatmap=False, axes=False
    )
    # far horizontal link at z = 3 (root -> j1), then a near vertical link at z = 1 crossing it at the centre
    far_first = _pose([(-0.6, 0, 3), (0.6, 0, 3), (0, -0.2, 1), (0, 0.2, 1)])
    # the same two links in the other chain order (near link drawn first in chain order)
    near_first = _pose([(0, -0.2, 1), (0, 0.2, 1), (-0.6, 0, 3), (0.6, 0, 3)])
    near_rgb, far_rgb = palette(0.0), palette(1.0)
    for pose in (far_first, near_first):
        img, _ = render_kvaf([pose], _K, _E, cfg)
        centre = img[0, 64, 64].astype(np.float64)
        assert np.abs(centre - near_rgb).max() < 3, centre
        assert np.abs(img[0, 64, 54].astype(np.float64) - far_rgb).max() < 3  # the far link is drawn elsewhere
    # two arms: the nearer arm covers the farther one whatever their order
    a, b = _pose([(-0.6, 0, 3), (0.6, 0, 3)]), _pose([(0, -0.2, 1), (0, 0.2, 1)])
    for arms in ([a, b], [b, a]):
        img, marks = render_kvaf(arms, _K, _E, cfg)
        assert np.abs(img[0, 64, 64].astype(np.float64) - near_rgb).max() < 3
        assert len(marks[0]["arms"]) == 2


def test_points_behind_camera_are_dropped():
    cfg = RenderConfig(SIZE, SIZE, depth_mode="absolute", depth_range=(0.5, 3.0))
    # root and j1 in front, ee behind the camera (z < 0): its heatmap, axes, the link to it are not drawn
    pose = _pose([(-0.3, 0, 1), (0.0, 0, 1), (0.3, 0.1, -1)])
    img, marks = render_kvaf([pose], _K, _E, cfg)
    assert marks[0]["ee"] is None and marks[0]["joints"][0] == pytest.approx([64.0, 64.0])
    assert img[0, :, 80:].max() == 0  # nothing right of the only visible joint (a line to the mirrored ee would be)
    assert img[0].max() > 0


def test_bad_inputs_name_what_is_wrong(kin):
    with pytest.raises(ValueError, match="no end-effector link 'gripper_tool'.*lbr_iiwa_link_7"):
        ArmKinematics(ROBOTS["manip"].with_ee_link("gripper_tool"))
    with pytest.raises(ValueError, match="6 values per frame.*7 movable joints"):
        kin.forward(np.zeros((3, 6)))
    pose = kin.forward(np.zeros((2, 7)))
    bad_k = _K.copy()
    bad_k[0, 0] = -100
    with pytest.raises(ValueError, match="camera at frame 0: intrinsics are not a pinhole"):
        render_kvaf([pose], bad_k, _E, RenderConfig())
    bad_e = np.tile(_E, (2, 1, 1))
    bad_e[1, :3, :3] *= 2.0
    with pytest.raises(ValueError, match="camera at frame 1: extrinsics rotation is not orthonormal"):
        render_kvaf([pose], _K, bad_e, RenderConfig())
    with pytest.raises(ValueError, match="need 2 frames"):
        render_kvaf([pose], np.tile(_K, (3, 1, 1)), _E, RenderConfig())


def test_gripper_follows_the_state_and_pybullets_fingers(manip, kin):
    """The schematic finger tips sit on pybullet's own finger-tip links, open and closed, and the opening read
    from the recorded finger joints (actwm.sim.manip: -0.3 / +0.3 rad open, 0 closed) is 1 / 0."""
    robot = ROBOTS["manip"]
    c, body = manip.client, manip.robot
    q = np.array([0.006, 0.413, -0.011, -1.589, 0.005, 1.138, -0.007])
    for j, v in zip(ARM_JOINTS, q):
        p.resetJointState(body, j, float(v), physicsClientId=c)
    for finger, opening in ((0.3, 1.0), (0.0, 0.0)):
        p.resetJointState(body, 8, -finger, physicsClientId=c)
        p.resetJointState(body, 11, finger, physicsClientId=c)
        tips = np.array(
            [p.getLinkState(body, j, computeForwardKinematics=True, physicsClientId=c)[4] for j in (10, 13)]
        )
        state = np.array([-finger, finger])
        read = np.clip(robot.gripper_bias + state @ np.asarray(robot.gripper_weights), 0, 1)
        assert read == pytest.approx(opening)
        ours = gripper_points(kin.forward(q, [read]), robot.gripper)[0, 4:6]
        assert np.linalg.norm(ours - tips, axis=1).max() < 0.012


@pytest.mark.parametrize(
    "settings, fracs",
    [
        ({"depth_mode": "percentile", "percentiles": (0.0, 100.0)}, (0.25, 0.75)),  # the video's own depth span
        ({"depth_mode": "absolute", "depth_range": (1.0, 3.0)}, (0.25, 0.75)),
        ({"depth_mode": "absolute", "depth_range": (0.5, 5.5)}, (0.2, 0.4)),
    ],
)
def test_depth_shading_uses_the_chosen_range(settings, fracs):
    # a vertical link from depth 1 to 2 (mid 1.5) above a vertical link from 2 to 3 (mid 2.5)
    pose = _pose([(0.0, -0.5, 1.0), (0.0, 0.0, 2.0), (0.0, 0.3, 3.0)])
    cfg = RenderConfig(SIZE, SIZE, landmarks=False, heatmap=False, axes=False, gripper=False, **settings)
    img, _ = render_kvaf([pose], _K, _E, cfg)
    upper, lower = img[0, 30, 64].astype(np.float64), img[0, 69, 64].astype(np.float64)
    assert np.abs(upper - palette(fracs[0])).max() < 3 and np.abs(lower - palette(fracs[1])).max() < 3


def test_forward_kinematics_of_other_urdf_arms_matches_pybullet():
    """Any serial arm: panda (fixed joints before the hand) and the iiwa URDF on a moved, turned base, against
    pybullet's own link states of the same file loaded at that base pose in another client."""
    rng = np.random.default_rng(1)
    cases = [
        (RobotSpec("panda", "franka_panda/panda.urdf", "panda_hand", gripper=None), (0, 0, 0), (0, 0, 0, 1), 7),
        (RobotSpec("iiwa", "kuka_iiwa/model.urdf", "lbr_iiwa_link_7", gripper=None), (0.3, -0.2, 0.1), None, 7),
    ]
    for spec, pos, orn, n in cases:
        orn = orn or p.getQuaternionFromEuler([0.1, -0.2, 0.7])
        spec = RobotSpec(**{**spec.__dict__, "base_position": pos, "base_orientation": orn})
        q = rng.uniform(-1.5, 1.5, (5, n))
        c = p.connect(p.DIRECT)
        try:
            body = p.loadURDF(str(spec.resolved_path()), pos, orn, useFixedBase=True, physicsClientId=c)
            names = [
                p.getJointInfo(body, j, physicsClientId=c)[12].decode()
                for j in range(p.getNumJoints(body, physicsClientId=c))
            ]
            ee = names.index(spec.ee_link)
            ref_j, ref_ee = [], []
            for row in q:
                for j, v in enumerate(row):
                    p.resetJointState(body, j, float(v), physicsClientId=c)
                ls = [p.getLinkState(body, j, computeForwardKinematics=True, physicsClientId=c)[4] for j in range(n)]
                ref_j.append(ls)
                ref_ee.append(p.getLinkState(body, ee, computeForwardKinematics=True, physicsClientId=c)[4])
        finally:
            p.disconnect(c)
        with ArmKinematics(spec) as kin:
            assert kin.n_joints == n
            pose = kin.forward(q)
            assert np.allclose(pose.root, pos, atol=1e-6)
        assert np.abs(pose.joints - np.asarray(ref_j)).max() < 1e-5
        assert np.abs(pose.ee_pos - np.asarray(ref_ee)).max() < 1e-5
