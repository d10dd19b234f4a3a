"""Rollouts: batching, autoregressive chunks, the gym API, the CLI and its errors."""

import json

import numpy as np
import pytest
import torch

from actwm import cli as actwm_cli
from actwm.models.world_model import WorldModel
from actwm.rollout import rollout as rollout_mod
from actwm.rollout.cli import load_actions
from actwm.rollout.env import WorldModelEnv, to_tensor, to_uint8
from actwm.rollout.rollout import RolloutConfig, _chunk_bounds, rollout
from actwm.video import write_frames


def main(argv: list[str]) -> int:
    """`actwm rollout ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["rollout", *argv])


def tiny_nav_model() -> WorldModel:
    """A tiny Wan 2.1 nav3 world model at 32 px with a randomised (non-zero) action encoder."""
    torch.manual_seed(0)
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3", image_size=[32, 32], clip_frames=9, fps=5.0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in wm.encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return wm


@pytest.fixture(scope="module")
def wm():
    return tiny_nav_model()


def _frame(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g) * 2 - 1


def _actions(n, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, 3, generator=g) * torch.tensor([0.1, 0.02, 0.2])


def test_batched_equals_one_by_one(wm):
    frame, acts = _frame(), _actions(3, 9)
    cfg = RolloutConfig(steps=3, seed=5)
    batched = rollout(wm, frame, acts, cfg=cfg)
    singles = [rollout(wm, frame, acts[i : i + 1], cfg=cfg, seeds=[5 + i]) for i in range(3)]
    torch.testing.assert_close(batched, torch.cat(singles), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # different actions/seeds -> different futures


def test_same_seed_reproducible(wm):
    frame, acts = _frame(), _actions(2, 9)
    a = rollout(wm, frame, acts, cfg=RolloutConfig(steps=2, seed=3))
    b = rollout(wm, frame, acts, cfg=RolloutConfig(steps=2, seed=3))
    assert torch.equal(a, b)


def test_chunk_bounds():
    assert _chunk_bounds(9, 9, 4) == [(0, 9, 9)]
    assert _chunk_bounds(17, 9, 4) == [(0, 9, 9), (8, 9, 9)]
    assert _chunk_bounds(12, 9, 4) == [(0, 9, 9), (8, 5, 4)]  # last chunk rounds up to 1 + 4n, keeps 4
    assert _chunk_bounds(5, 3, 1) == [(0, 3, 3), (2, 3, 3)]


def test_autoregressive_two_chunks_condition_on_previous(wm, monkeypatch):
    calls = []
    original = WorldModel.generate

    def spy(self, first_frame, actions, *a, **kw):
        out = original(self, first_frame, actions, *a, **kw)
        calls.append((first_frame.clone(), actions.clone(), out.clone()))
        return out

    monkeypatch.setattr(WorldModel, "generate", spy)
    frame, acts = _frame(), _actions(1, 17)
    video = rollout(wm, frame, acts, cfg=RolloutConfig(steps=2))
    assert video.shape == (1, 17, 3, 32, 32)
    assert len(calls) == 2
    first_chunk_out = calls[0][2]
    assert torch.equal(calls[1][0], first_chunk_out[:, -1])  # chunk 2 starts from chunk 1's last frame
    assert torch.equal(video[:, 8], first_chunk_out[:, -1])
    assert torch.equal(video[:, 9:], calls[1][2][:, 1:])
    # the second chunk's actions are re-expressed relative to its own first frame
    expected = rollout_mod.to_model_actions(wm, acts[:, 8:17])
    assert torch.equal(calls[1][1], expected)


def test_cumulative_mode_rebases_nav_actions(wm):
    cum = WorldModel.from_config(type(wm.config)(**{**wm.config.to_dict(), "action_mode": "cumulative"}))
    raw = torch.tensor([[[1.0, 0.0, np.pi / 2], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    got = cum.action_space.denormalise(rollout_mod.to_model_actions(cum, raw))
    torch.testing.assert_close(
        got[0], torch.tensor([[0.0, 0, 0], [1.0, 0, np.pi / 2], [1.0, 1.0, np.pi / 2]]), atol=1e-5, rtol=0
    )


def test_gym_env_api(wm):
    env = WorldModelEnv(wm, RolloutConfig(steps=2))
    start = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    obs, info = env.reset(seed=1, options={"rgb": start})
    assert np.array_equal(obs["rgb"], start) or np.abs(obs["rgb"].astype(int) - start).max() <= 1
    action = np.array([0.2, 0.0, 0.1], dtype=np.float32)
    obs2, reward, terminated, truncated, info = env.step(action)
    assert obs2["rgb"].shape == (32, 32, 3) and obs2["rgb"].dtype == np.uint8
    assert info["step"] == 1 and not terminated
    # the observation is the model's imagination of that action from that frame, with the episode's seed
    raw = torch.tensor([[action.tolist(), [0.0, 0.0, 0.0]]])
    expected = rollout(wm, to_tensor(start), raw, cfg=RolloutConfig(steps=2, seed=1))[0, 1]
    assert np.array_equal(obs2["rgb"], to_uint8(expected))
    other = rollout(wm, to_tensor(start), -raw, cfg=RolloutConfig(steps=2, seed=1))[0, 1]
    assert not np.array_equal(obs2["rgb"], to_uint8(other))  # and it depends on the action
    with pytest.raises(ValueError, match="dimension"):
        env.step(np.zeros(5))


def test_errors(wm, tmp_path):
    with pytest.raises(ValueError, match="trained at 32x32"):
        rollout(wm, _frame(size=64), _actions(1, 9))
    bad = tmp_path / "a.npy"
    np.save(bad, np.zeros((9, 5), np.float32))
    with pytest.raises(ValueError, match=r"a.npy: actions must be \(T, 3\)"):
        load_actions(bad, 3)
    nan = tmp_path / "n.csv"
    nan.write_text("0,0,0\nnan,0,0\n")
    with pytest.raises(ValueError, match="n.csv: actions contain NaN"):
        load_actions(nan, 3)
    with pytest.raises(ValueError, match="does not exist"):
        load_actions(tmp_path / "missing.npy", 3)


def test_cli_writes_frames_videos_and_errors(wm, tmp_path, capsys):
    ckpt = wm.save(tmp_path / "ckpt")
    frame = (to_tensor((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))[0] + 1) * 127.5
    write_frames(tmp_path / "start", frame.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()[None])
    np.save(tmp_path / "acts.npy", _actions(2, 9).numpy())
    out = tmp_path / "out"
    rc = main(
        [
            "--checkpoint",
            str(ckpt),
            "--frame",
            str(tmp_path / "start" / "000000.png"),
            "--actions",
            str(tmp_path / "acts.npy"),
            "--out",
            str(out),
            "--steps",
            "2",
        ]
    )
    assert rc == 0
    assert len(list((out / "pred" / "candidate_001").glob("*.png"))) == 9
    assert (out / "videos" / "candidate_000_pred.mp4").stat().st_size > 0
    assert (out / "videos" / "candidate_000_pred.gif").stat().st_size > 0
    assert json.loads((out / "rollout.json").read_text())["candidates"] == 2
    # guidance on actions, only at flow times in (0.3, 1]; an empty interval is refused
    args = [
        "--checkpoint",
        str(ckpt),
        "--frame",
        str(tmp_path / "start" / "000000.png"),
        "--actions",
        str(tmp_path / "acts.npy"),
        "--steps",
        "2",
        "--guidance",
        "2",
    ]
    assert main(args + ["--out", str(tmp_path / "guided"), "--guidance-interval", "0.3", "1"]) == 0
    record = json.loads((tmp_path / "guided" / "rollout.json").read_text())
    assert record["guidance"] == 2.0 and record["guidance_interval"] == [0.3, 1.0]
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "bad"), "--guidance-interval", "0.5", "0.5"]) == 2
    assert "--guidance-interval must be (lo, hi) with lo < hi" in capsys.readouterr().err  # named as the option
    # wrong image size and a checkpoint directory that is not one: exit 2 with a message
    write_frames(tmp_path / "big", np.zeros((1, 64, 64, 3), np.uint8))
    rc = main(
        [
            "--checkpoint",
            str(ckpt),
            "--frame",
            str(tmp_path / "big" / "000000.png"),
            "--actions",
            str(tmp_path / "acts.npy"),
            "--out",
            str(out),
        ]
    )
    assert rc == 2 and "trained at 32x32" in capsys.readouterr().err
    rc = main(["--checkpoint", str(tmp_path), "--frame", "x.png", "--actions", "a.npy", "--out", str(out)])
    assert rc == 2 and "not a world-model checkpoint" in capsys.readouterr().err


def _cli_base(ckpt, tmp_path):
    frame = (np.random.default_rng(0).random((1, 32, 32, 3)) * 255).astype(np.uint8)
    write_frames(tmp_path / "start", frame)
    return ["--checkpoint", str(ckpt), "--frame", str(tmp_path / "start" / "000000.png"), "--steps", "1"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guidance", "nan"], "--guidance must be a finite number"),
        (["--fps", "0"], "--fps must be a positive number"),
        (["--fps", "-3"], "--fps must be a positive number"),
        (["--guidance-interval", "nan", "1"], "--guidance-interval must be two finite numbers"),
        (["--steps", "0"], "--steps must be >= 1"),
    ],
)
def test_cli_bad_options_fail_before_any_output(wm, tmp_path, capsys, extra, message):
    np.save(tmp_path / "acts.npy", _actions(1, 9).numpy())
    out = tmp_path / "out"
    args = _cli_base(wm.save(tmp_path / "ckpt"), tmp_path) + ["--actions", str(tmp_path / "acts.npy")]
    assert main(args + ["--out", str(out)] + extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value", [1e30, float("nan")])
def test_absurd_or_nan_actions_are_refused(wm, tmp_path, capsys, value):
    acts = _actions(1, 9).numpy()
    acts[0, 3, 0] = value
    np.save(tmp_path / "acts.npy", acts)
    out = tmp_path / "out"
    args = _cli_base(wm.save(tmp_path / "ckpt"), tmp_path) + ["--actions", str(tmp_path / "acts.npy")]
    assert main(args + ["--out", str(out)]) == 2
    assert "actions" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="out of range|NaN"):
        rollout(wm, _frame(), torch.from_numpy(acts))


def test_rollout_into_an_old_rollout_leaves_no_stale_frames(wm, tmp_path):
    ckpt = wm.save(tmp_path / "ckpt")
    out = tmp_path / "out"
    base = _cli_base(ckpt, tmp_path) + ["--out", str(out)]
    np.save(tmp_path / "long.npy", _actions(3, 17).numpy())
    assert main(base + ["--actions", str(tmp_path / "long.npy")]) == 0
    assert len(list((out / "pred" / "candidate_000").glob("*.png"))) == 17
    (out / "notes.txt").write_text("mine")  # a user's file in the folder stays
    np.save(tmp_path / "short.npy", _actions(1, 9).numpy()[0])
    assert main(base + ["--actions", str(tmp_path / "short.npy")]) == 0
    assert sorted(p.name for p in (out / "pred").iterdir()) == ["rollout"]
    assert len(list((out / "pred" / "rollout").glob("*.png"))) == 9
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["rollout_pred.gif", "rollout_pred.mp4"]
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "pred", "rollout.json", "videos"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dirs left


def test_episode_frames_and_index_errors(wm, tmp_path, capsys):
    from actwm.data.lerobot import LeRobotDataset, LeRobotWriter
    from actwm.episode import Episode

    rng = np.random.default_rng(0)
    writer = LeRobotWriter(tmp_path / "store", fps=5.0, action_space="nav3")
    writer.add_episode(
        Episode(
            frames=(rng.random((12, 32, 32, 3)) * 255).astype(np.uint8),
            actions=(rng.standard_normal((12, 3)) * 0.1).astype(np.float32),
            state=np.zeros((12, 0), np.float32),
            fps=5.0,
            action_space="nav3",
        )
    )
    writer.finalize()
    ckpt = wm.save(tmp_path / "ckpt")
    out = tmp_path / "out"
    base = ["--checkpoint", str(ckpt), "--out", str(out), "--steps", "1"]
    for extra, message in [
        (["--episode", f"{tmp_path / 'store'}:1"], "no episode 1"),
        (["--episode", f"{tmp_path / 'store'}:0", "--frames", "-5"], "--frames must be >= 2"),
        (["--episode", f"{tmp_path / 'store'}:0", "--frames", "0"], "--frames must be >= 2"),
        (["--episode", f"{tmp_path / 'store'}:0", "--frames", "40"], "exceed its 12 frames"),
    ]:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert main(base + ["--episode", f"{tmp_path / 'store'}:0", "--frames", "5"]) == 0
    assert len(list((out / "pred" / "rollout").glob("*.png"))) == 5
    gt = LeRobotDataset(tmp_path / "store").episode(0).frames[:5]
    assert len(list((out / "gt" / "rollout").glob("*.png"))) == len(gt)
