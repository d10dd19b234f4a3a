"""The `nav` world: API, determinism, camera geometry, motion and collisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import actwm.sim
from actwm.geometry import backproject_depth, project_points, wrap_angle
from actwm.sim import make
from actwm.sim.nav import DISCRETE_ACTIONS, NavEnv


@pytest.fixture
def env():
    e = make("nav", size=32)
    yield e
    e.close()


@pytest.fixture(params=[1, 3], ids=["plain", "supersample3"])
def geo_env(request):
    """The camera geometry must hold with and without anti-aliasing (its K shifts the principal point)."""
    e = make("nav", size=32, supersample=request.param)
    yield e
    e.close()


def _to_world(obs: dict) -> np.ndarray:
    """Back-project the depth image with K and the extrinsics: (H, W, 3) world points."""
    cam = backproject_depth(obs["depth"], obs["intrinsics"])
    e = obs["extrinsics"].astype(np.float64)
    return (cam - e[:3, 3]) @ e[:3, :3]


def _facing_pose(env: NavEnv, target: tuple[float, float], dist: float) -> np.ndarray | None:
    """A free pose `dist` metres from `target` that faces it with a clear line of sight (or None)."""
    for ang in np.linspace(0, 2 * math.pi, 48, endpoint=False):
        x, y = target[0] + dist * math.cos(ang), target[1] + dist * math.sin(ang)
        ts = np.linspace(0, 1, 40)
        xs, ys = x + ts * (target[0] - x), y + ts * (target[1] - y)
        if env._collides(x, y):
            continue
        others = [fp for fp in env.footprints if (fp.cx, fp.cy) != target]
        if any((fp.distance(xs, ys) < 0.05).any() for fp in others):
            continue
        return np.array([x, y, math.atan2(target[1] - y, target[0] - x)])
    return None


def test_make_rejects_unknown_name():
    with pytest.raises(ValueError, match="nav"):
        make("maze")


def test_obs_shapes_dtypes_and_info(env):
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["rgb"].shape == (32, 32, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (32, 32) and obs["depth"].dtype == np.float32
    assert obs["segmentation"].shape == (32, 32) and obs["segmentation"].dtype == np.int32
    assert obs["intrinsics"].shape == (3, 3) and obs["extrinsics"].shape == (4, 4)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (6,)
    np.testing.assert_allclose(obs["state"][:3], obs["pose"])
    assert info["scene_id"] == 3 and info["fps"] == 5.0
    assert 9 <= len(info["static_ids"]) <= 14  # 4 walls + 5..10 structures
    visible = set(np.unique(obs["segmentation"]).tolist()) - {-1}
    assert visible, "the camera sees nothing"
    assert env.action_space.shape == (3,) and env.unwrapped.action_space_name == "nav3"


def test_same_seed_same_frames_different_seed_different_scene():
    a, b = make("nav", size=32), make("nav", size=32)
    try:
        oa, _ = a.reset(seed=11)
        ob, _ = b.reset(seed=11)
        for _ in range(3):
            np.testing.assert_array_equal(oa["rgb"], ob["rgb"])
            np.testing.assert_array_equal(oa["depth"], ob["depth"])
            np.testing.assert_array_equal(oa["segmentation"], ob["segmentation"])
            oa = a.step(a.unwrapped.discrete("left"))[0]
            ob = b.step(b.unwrapped.discrete("left"))[0]
        layouts = set()
        for seed in range(8):
            a.reset(seed=seed)
            layouts.add(tuple(round(v, 3) for fp in a.unwrapped.footprints for v in (fp.cx, fp.cy)))
        assert len(layouts) == 8, "different seeds must give different layouts"
        o1, _ = a.reset(seed=1)
        o2, _ = a.reset(seed=2)
        assert not np.array_equal(o1["rgb"], o2["rgb"])
    finally:
        a.close()
        b.close()


def test_projection_of_structure_lands_on_its_segment_and_depth_matches(geo_env):
    env = geo_env
    checked = 0
    for seed in range(6):
        env.reset(seed=seed)
        for s in env.unwrapped.structures:
            if s["kind"] not in ("box", "pillar", "tower"):
                continue
            fp = s["footprint"]
            pose = _facing_pose(env.unwrapped, (fp.cx, fp.cy), fp.bound + 1.2)
            if pose is None:
                continue
            obs, _ = env.reset(seed=seed, options={"pose": pose})
            centre = np.array([fp.cx, fp.cy, min(0.5 * s["height"], 0.5)])
            uv, z = project_points(centre, obs["intrinsics"], obs["extrinsics"])
            u, v = uv[0]
            i, j = int(round(v)), int(round(u))
            assert 0 <= i < 32 and 0 <= j < 32 and z[0] > 0
            assert obs["segmentation"][i, j] == s["id"]
            # the visible surface lies in front of the centre, at most the footprint radius nearer
            assert z[0] - fp.bound - 0.05 < obs["depth"][i, j] < z[0]
            # every pixel of the object back-projects onto its outline, within its height
            world = _to_world(obs)[obs["segmentation"] == s["id"]]
            assert np.abs(fp.distance(world[:, 0], world[:, 1])).max() < 0.03 + 0.03 * (s["kind"] == "pillar")
            assert world[:, 2].min() > -0.02 and world[:, 2].max() < s["height"] + 0.12
            checked += 1
            break
        if checked >= 3:
            break
    assert checked >= 3


def test_depth_backprojects_onto_floor_and_walls(geo_env):
    env = geo_env
    obs, info = env.reset(seed=4)
    world = _to_world(obs)
    seg = obs["segmentation"]
    floor = seg == 0
    assert floor.sum() > 20
    np.testing.assert_allclose(world[floor][:, 2], 0.0, atol=5e-3)
    for wall in env.unwrapped.walls:
        pts = world[seg == wall["id"]]
        if len(pts):
            np.testing.assert_allclose(pts[:, wall["axis"]], wall["plane"], atol=5e-3)


def test_forward_moves_camera_and_depth_in_front_decreases(env):
    obs, _ = env.reset(seed=5)
    hx, _ = env.unwrapped.room_half
    # face the +x wall from 2 m away, near the middle, in a free spot
    for y in np.linspace(-2, 2, 17):
        if env.unwrapped.clearance(hx - 2.0, y) > 0.5 and env.unwrapped.clearance(hx - 1.2, y) > 0.5:
            break
    obs, _ = env.reset(seed=5, options={"pose": (hx - 2.0, y, 0.0)})
    obs2, _, _, _, info = env.step(env.unwrapped.discrete("forward"))
    assert not info["collided"]
    np.testing.assert_allclose(obs2["pose"][:2] - obs["pose"][:2], [0.25, 0.0], atol=1e-5)
    eye1 = -obs["extrinsics"][:3, :3].T @ obs["extrinsics"][:3, 3]
    eye2 = -obs2["extrinsics"][:3, :3].T @ obs2["extrinsics"][:3, 3]
    np.testing.assert_allclose(eye2 - eye1, [0.25, 0.0, 0.0], atol=1e-5)
    c = slice(12, 20)
    before, after = obs["depth"][c, c], obs2["depth"][c, c]
    drop = float(np.median(before - after))
    assert 0.15 < drop < 0.35, drop


def test_collision_does_not_pass_through_walls(env):
    env.reset(seed=7)
    hx, hy = env.unwrapped.room_half
    for y in np.linspace(-2, 2, 17):
        if env.unwrapped.clearance(hx - 1.0, y) > 0.45 and env.unwrapped.clearance(hx - 0.3, y) > 0.09:
            break
    obs, _ = env.reset(seed=7, options={"pose": (hx - 1.0, y, 0.0)})
    collided = []
    for _ in range(8):
        prev = obs
        obs, _, _, _, info = env.step(np.array([0.3, 0.0, 0.0], np.float32))
        collided.append(info["collided"])
        assert obs["pose"][0] <= hx - env.unwrapped.config.robot_radius + 1e-6
        if info["collided"]:
            np.testing.assert_array_equal(obs["pose"], prev["pose"])
            np.testing.assert_array_equal(obs["rgb"], prev["rgb"])
            np.testing.assert_array_equal(obs["state"][3:], 0.0)
    assert collided[0] is False and collided[-1] is True
    # a single long step cannot tunnel through a thin pillar either
    pillars = [s for s in env.unwrapped.structures if s["kind"] == "pillar"]
    if pillars:
        fp = pillars[0]["footprint"]
        pose = _facing_pose(env.unwrapped, (fp.cx, fp.cy), fp.hx + 0.45)
        if pose is not None:
            env.reset(seed=7, options={"pose": pose})
            _, _, _, _, info = env.step(np.array([0.5, 0.0, 0.0], np.float32))
            assert info["collided"]


def test_discrete_vocabulary(env):
    assert DISCRETE_ACTIONS == {
        "forward": (0.25, 0.0, 0.0),
        "left": (0.0, 0.0, math.pi / 8),
        "right": (0.0, 0.0, -math.pi / 8),
        "stop": (0.0, 0.0, 0.0),
    }
    assert actwm.sim.DISCRETE_ACTIONS is DISCRETE_ACTIONS
    u = env.unwrapped
    np.testing.assert_array_equal(u.discrete("forward"), np.array([0.25, 0, 0], np.float32))
    np.testing.assert_array_equal(u.discrete(1), u.discrete("left"))
    np.testing.assert_array_equal(u.discrete(3), np.zeros(3, np.float32))
    obs, _ = env.reset(seed=2)
    for name, dyaw in (("left", math.pi / 8), ("right", -math.pi / 8)):
        new, *_ = env.step(u.discrete(name))
        assert wrap_angle(new["pose"][2] - obs["pose"][2]) == pytest.approx(dyaw, abs=1e-5)
        np.testing.assert_allclose(new["pose"][:2], obs["pose"][:2], atol=1e-6)
        obs = new
    stopped, *_ = env.step(u.discrete("stop"))
    np.testing.assert_array_equal(stopped["pose"], obs["pose"])
    with pytest.raises(ValueError, match="discrete"):
        u.discrete("jump")
    with pytest.raises(ValueError, match="range"):
        u.discrete(4)


def test_bad_actions_raise(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0]))
    with pytest.raises(ValueError, match="dx"):
        env.step(np.array([5.0, 0, 0]))
    with pytest.raises(ValueError, match="pose"):
        env.reset(seed=0, options={"pose": (100.0, 0.0, 0.0)})


def test_envs_coexist_and_close():
    a, b = make("nav", size=32, seed=1), make("nav", size=32, seed=2)
    oa, ia = a.reset()
    ob, ib = b.reset()
    assert (ia["scene_id"], ib["scene_id"]) == (1, 2)
    assert a.unwrapped.client != b.unwrapped.client
    a.step(a.unwrapped.discrete("left"))
    alone = make("nav", size=32)
    ob2, _ = alone.reset(seed=2)
    np.testing.assert_array_equal(ob["rgb"], ob2["rgb"])
    for e in (a, b, alone):
        e.close()
        assert e.unwrapped.client is None


def test_fresh_client_after_texture_budget_gives_identical_scene(env):
    obs, _ = env.reset(seed=9)
    env.unwrapped.texture_budget = 0  # force a new pybullet client on the next reset
    assert env.unwrapped.connections == 1
    obs2, _ = env.reset(seed=9)
    assert env.unwrapped.connections == 2
    np.testing.assert_array_equal(obs["rgb"], obs2["rgb"])
    np.testing.assert_array_equal(obs["segmentation"], obs2["segmentation"])


def test_gymnasium_env_checker_passes():
    import warnings

    from gymnasium.utils.env_checker import check_env

    for name in ("nav", "manip"):
        e = make(name, size=32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(e)
        e.close()


def test_supersampled_render_is_the_block_mean_of_the_large_render():
    small, large = make("nav", size=16, supersample=3), make("nav", size=48)
    try:
        a, _ = small.reset(seed=3)
        b, _ = large.reset(seed=3)
    finally:
        small.close()
        large.close()
    blocks = b["rgb"].reshape(16, 3, 16, 3, 3).astype(np.float64).mean(axis=(1, 3))
    assert a["rgb"].shape == (16, 16, 3) and a["rgb"].dtype == np.uint8
    assert np.abs(a["rgb"] - blocks).max() <= 0.5 + 1e-9  # rounded block means
    assert np.array_equal(a["segmentation"], b["segmentation"][1::3, 1::3])  # centre samples
    assert np.array_equal(a["depth"], b["depth"][1::3, 1::3])
    with pytest.raises(ValueError, match="supersample"):
        make("nav", size=16, supersample=2)
