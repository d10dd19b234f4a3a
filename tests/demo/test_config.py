"""`DemoConfig`: nested by concept, written nested, the flat (pre-nesting) file still read, the CLI flags kept."""

import json

import pytest

from actwm.demo import command
from actwm.demo.config import DemoConfig, migrate_flat
from actwm.demo.pipeline import run_demo
from actwm.planning.loop import PlannerConfig
from actwm.planning.translate import FrameStep

# /tmp/demo_new/demo_config.json as the demo wrote it before the nesting (every key, in its order)
OLD_FLAT = {
    "out": "/tmp/demo_new",
    "size": 32,
    "train_episodes": 48,
    "test_episodes": 8,
    "episode_frames": 64,
    "robot_speed": 0.08,
    "robot_turn_rate": 0.1,
    "supersample": 3,
    "model": "wan2.1-i2v-tiny",
    "spatial": 2,
    "layers": 2,
    "heads": 6,
    "features": "sincos",
    "hidden_dim": 128,
    "max_freq": 10.0,
    "passive_steps": 600,
    "action_steps": 3200,
    "scratch": True,
    "batch_size": 8,
    "lr": 0.001,
    "action_lr_mult": 3.0,
    "logit_mean": 2.0,
    "action_dropout": 0.1,
    "guidance": 2.0,
    "guidance_interval": [0.3, 1.0],
    "mixed_precision": "auto",
    "compile": True,
    "horizon": 8,
    "eval_frames": 17,
    "eval_clips": 24,
    "sample_steps": 10,
    "horizons": [2, 4, 8, 16],
    "scs": True,
    "seed": 0,
    "threads": 1,
    "plan": True,
    "plan_episodes": 16,
    "plan_proposals": 4,
    "plan_horizon": 2,
    "plan_execute": 2,
    "plan_budget": 24,
    "plan_steps": 4,
    "plan_sweep": [1, 2, 4],
    "plan_calib_scenes": 12,
    "plan_forward_range": [2, 4],
    "plan_view_turns": 0,
    "plan_parallel": True,
}

# the flat `DemoConfig.quick()` overrides before the nesting
OLD_QUICK = {
    "train_episodes": 12,
    "test_episodes": 3,
    "episode_frames": 40,
    "passive_steps": 150,
    "action_steps": 250,
    "scratch": False,
    "compile": False,
    "eval_clips": 6,
    "sample_steps": 6,
    "plan_episodes": 2,
    "plan_proposals": 2,
    "plan_budget": 6,
    "plan_steps": 2,
    "plan_sweep": (1, 2),
    "plan_calib_scenes": 2,
    "plan_parallel": False,
}


def test_old_flat_file_reads_as_the_same_settings():
    assert DemoConfig.from_dict(OLD_FLAT) == DemoConfig(out="/tmp/demo_new")


def test_every_flat_key_lands_on_its_nested_field():
    """Each old key set to a non-default value arrives where the demo now reads it."""
    flat = dict(OLD_FLAT, out="o", size=48, train_episodes=5, test_episodes=4, episode_frames=30, robot_speed=0.05)
    flat.update(robot_turn_rate=0.2, supersample=1, model="svd-tiny", spatial=4, layers=3, heads=2, features="mlp")
    flat.update(hidden_dim=64, max_freq=5.0, passive_steps=7, action_steps=9, scratch=False, batch_size=3, lr=0.1)
    flat.update(action_lr_mult=2.0, logit_mean=1.0, action_dropout=0.2, guidance=1.5, guidance_interval=[0.1, 0.9])
    flat.update(mixed_precision="no", compile=False, horizon=4, eval_frames=9, eval_clips=3, sample_steps=5)
    flat.update(horizons=[1, 8], scs=False, seed=3, threads=2, plan=False, plan_episodes=5, plan_proposals=6)
    flat.update(plan_horizon=3, plan_execute=1, plan_budget=11, plan_steps=7, plan_sweep=[1, 6], plan_calib_scenes=4)
    flat.update(plan_forward_range=[3, 5], plan_view_turns=1, plan_parallel=False)
    cfg = DemoConfig.from_dict(flat)
    d, m, t, g, e, p = cfg.data, cfg.model, cfg.train, cfg.guidance, cfg.eval, cfg.plan
    assert (cfg.out, cfg.seed, cfg.threads) == ("o", 3, 2)
    assert (d.size, d.train_episodes, d.test_episodes, d.episode_frames, d.supersample) == (48, 5, 4, 30, 1)
    assert d.frame_step == FrameStep(0.05, 0.2)
    assert (m.preset, m.spatial, m.layers, m.heads) == ("svd-tiny", 4, 3, 2)
    assert (m.encoder.features, m.encoder.hidden_dim, m.encoder.max_freq) == ("mlp", 64, 5.0)
    assert (t.passive_steps, t.action_steps, t.scratch, t.batch_size, t.horizon) == (7, 9, False, 3, 4)
    assert (t.optim.lr, t.optim.action_lr_mult, t.logit_mean, t.action_dropout) == (0.1, 2.0, 1.0, 0.2)
    assert (t.mixed_precision, t.compile) == ("no", False)
    assert (g.scale, g.interval) == (1.5, (0.1, 0.9))
    assert (e.frames, e.clips, e.sample_steps, e.horizons, e.scs) == (9, 3, 5, (1, 8), False)
    assert (p.enabled, p.episodes, p.budget, p.rollout_steps, p.sweep, p.calib_scenes) == (False, 5, 11, 7, (1, 6), 4)
    assert (p.forward_range, p.view_turns, p.parallel) == ((3, 5), 1, False)
    # the demo's planner keeps its revise-not-replace margin and stop rule (constants before the nesting)
    assert p.planner == PlannerConfig(6, 3, 1, base_margin=0.1, always_stop_rule=True)


def test_quick_keeps_its_values():
    old = DemoConfig.from_dict(dict(OLD_FLAT, out="actwm_out/demo", **OLD_QUICK))
    # the one deliberate change since the nesting: fewer smoke-run steps (3 minutes on an AVX2 laptop CPU)
    assert DemoConfig.quick() == old.updated({"train": {"passive_steps": 60, "action_steps": 100}})
    # overrides per group leave the group's other quick values alone
    cfg = DemoConfig.quick(out="x", data={"train_episodes": 3})
    assert (cfg.out, cfg.data.train_episodes, cfg.data.test_episodes) == ("x", 3, 3)


def test_nested_dict_round_trips_and_unknown_keys_are_named():
    cfg = DemoConfig.quick(out="x")
    assert DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown setting 'plan_episode'"):
        migrate_flat({"plan_episode": 3})
    with pytest.raises(ValueError, match="unknown setting 'plan.planner.proposal'"):
        DemoConfig.from_dict({"plan": {"planner": {"proposal": 3}}})


def _done(state):
    state.result = {}


def test_run_demo_resumes_a_directory_with_an_old_flat_config(tmp_path):
    saved = tmp_path / "demo_config.json"
    saved.write_text(json.dumps(dict(OLD_FLAT, out=str(tmp_path))))
    cfg = DemoConfig(out=str(tmp_path))
    run_demo(cfg, stages=[("report", _done)])  # the same settings: accepted, then rewritten nested
    assert json.loads(saved.read_text()) == cfg.to_dict()
    saved.write_text(json.dumps(dict(OLD_FLAT, out=str(tmp_path), plan_episodes=3)))
    with pytest.raises(ValueError, match="other settings"):
        run_demo(cfg, stages=[("report", _done)])


def test_cli_flags_set_the_nested_fields(monkeypatch, capsys):
    seen = []

    def fake_run(cfg):
        seen.append(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr(command, "run_demo", fake_run)
    assert command.main(["--quick", "--out", "o", "--threads", "2", "--no-plan"]) == 2
    assert seen[-1] == DemoConfig.quick(out="o", threads=2, plan={"enabled": False})
    assert command.main([]) == 2 and seen[-1] == DemoConfig()
    flags = (("--no-scratch", "train", "scratch"), ("--no-compile", "train", "compile"))
    for flag, group, field in (*flags, ("--no-fast-paths", "train", "fast_paths")):
        assert command.main([flag]) == 2 and seen[-1] == DemoConfig().updated({group: {field: False}})
    assert command.main(["--action-steps", "4800", "--passive-steps", "700"]) == 2
    assert seen[-1] == DemoConfig().updated({"train": {"action_steps": 4800, "passive_steps": 700}})
    assert command.main(["--quick", "--action-steps", "5"]) == 2
    assert seen[-1] == DemoConfig.quick(train={"action_steps": 5})
    calls = len(seen)  # a bad step count is refused before anything runs: one line, exit 2
    assert command.main(["--action-steps", "0", "--out", "o"]) == 2 and len(seen) == calls
    assert "actwm demo: error: TrainSettings.action_steps must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command.main(["--help"])
    help_text = capsys.readouterr().out
    for flag in (
        "--out",
        "--quick",
        "--fresh",
        "--threads",
        "--no-scratch",
        "--no-plan",
        "--no-compile",
        "--no-fast-paths",
        "--passive-steps",
        "--action-steps",
    ):
        assert flag in help_text


def test_run_demo_resumes_a_moved_directory_and_another_thread_count(tmp_path):
    """Only where the directory lives and the thread count may differ from the saved settings."""
    old = DemoConfig(out=str(tmp_path / "elsewhere"), threads=1)
    (tmp_path / "demo_config.json").write_text(json.dumps(old.to_dict()))
    cfg = DemoConfig(out=str(tmp_path), threads=2)
    run_demo(cfg, stages=[("report", _done)])  # accepted, then rewritten with this run's out and threads
    assert json.loads((tmp_path / "demo_config.json").read_text()) == cfg.to_dict()
    (tmp_path / "demo_config.json").write_text(json.dumps(old.updated({"seed": 1}).to_dict()))
    with pytest.raises(ValueError, match="other settings"):
        run_demo(cfg, stages=[("report", _done)])
