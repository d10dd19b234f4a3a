"""`actwm demo` end to end at a minimal size: every stage runs, outputs are complete, a re-run resumes."""

import json
from pathlib import Path

import pytest
import torch

from actwm.demo import DemoConfig, resolve_precision, run_demo, shuffled_order


def test_shuffled_order_is_a_derangement():
    for n in (2, 3, 7, 24):
        order = shuffled_order(n)
        assert sorted(order) == list(range(n))
        assert all(i != j for i, j in enumerate(order))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig.quick(
        out=str(out),
        data={"train_episodes": 3, "test_episodes": 2, "episode_frames": 20},
        train={"passive_steps": 3, "action_steps": 3, "batch_size": 2, "scratch": True},
        eval={"clips": 2, "frames": 17},
    )
    return cfg, run_demo(cfg)


def test_demo_writes_metrics_and_report(demo):
    cfg, metrics = demo
    out = cfg.out
    saved = json.loads(open(f"{out}/metrics.json").read())
    assert saved == json.loads(json.dumps(metrics))
    for kind in ("true", "shuffled"):
        for metric in ("psnr", "ssim", "scs"):
            assert set(saved[kind][metric]) == {"2", "4", "8", "16"}
            assert all(v is not None for v in saved[kind][metric].values())
    assert set(saved["psnr_gap_db"]) == {"2", "4", "8", "16"}
    assert saved["psnr_gap_db"]["8"] == pytest.approx(
        saved["true"]["psnr"]["8"] - saved["shuffled"]["psnr"]["8"], abs=1e-3
    )
    assert "scratch" in saved and "true" in saved["scratch"]
    # guided rollouts are the headline; the same models without guidance are reported beside them
    assert saved["guidance"] == cfg.guidance.scale > 1.0
    assert saved["config"] == cfg.to_dict() and saved["config"]["train"]["optim"]["lr"] == cfg.train.optim.lr
    for model in ("action", "scratch"):
        unguided = saved[model]["unguided"]
        assert unguided["guidance"] == 1.0 and set(unguided["psnr_gap_db"]) == {"2", "4", "8", "16"}
        assert (Path(out) / "rollouts" / f"{model}_unguided" / "done.json").is_file()
    train_cfg = json.loads((Path(out) / "runs" / "action" / "final" / "train_config.json").read_text())
    assert train_cfg["action_dropout"] == cfg.train.action_dropout
    assert train_cfg["mixed_precision"] == resolve_precision(cfg.train.mixed_precision)
    assert train_cfg["fast_paths"] is cfg.train.fast_paths is True  # the demo trains with the Wan fast paths
    html = open(f"{out}/report.html").read()
    assert "assets/metrics.png" in html and ".gif" in html
    # the no-model baseline (frame 0 copied) is scored on the same clips and shown in the table
    assert set(saved["copy_first_frame"]["psnr"]) == {"2", "4", "8", "16"}
    assert "no model: copy frame 0" in html
    timings = json.loads(open(f"{out}/timings.json").read())
    assert {"1 simulate", "2 passive stage", "3 action stage", "8 report"} <= set(timings["stages"])


def test_demo_held_out_scenes_are_disjoint(demo):
    from actwm.data.lerobot import LeRobotDataset

    cfg, _ = demo
    store = LeRobotDataset(f"{cfg.out}/data")
    scenes = {
        split: {store.episode_meta(i)["scene_id"] for i in range(len(store)) if store.episode_meta(i)["split"] == split}
        for split in ("train", "test")
    }
    assert scenes["train"] and scenes["test"] and not scenes["train"] & scenes["test"]


def test_demo_resumes_without_redoing_work(demo, monkeypatch):
    import actwm.train.trainer as trainer

    cfg, metrics = demo
    weights = sorted(Path(cfg.out, "runs").rglob("model.safetensors"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    agents = sorted(Path(cfg.out, "planning").glob("*.json"))
    agent_stamps = [a.stat().st_mtime_ns for a in agents]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished demo trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    again = run_demo(cfg)  # every stage finds its output and skips
    assert again["true"] == metrics["true"]
    assert weights and [w.stat().st_mtime_ns for w in weights] == stamps
    # the closed-loop stage reads its agents' results back instead of running the episodes again
    assert len(agents) == 4 and [a.stat().st_mtime_ns for a in agents] == agent_stamps
    assert again["planning"]["agents"] == json.loads(json.dumps(metrics["planning"]["agents"]))


def test_demo_refuses_other_settings_in_same_dir(demo):
    cfg, _ = demo
    with pytest.raises(ValueError, match="other settings"):
        run_demo(DemoConfig.quick(out=cfg.out))


def test_demo_config_rejects_bad_sampling_settings():
    with pytest.raises(ValueError, match="action_dropout"):
        DemoConfig().updated({"guidance": {"scale": 2.0}, "train": {"action_dropout": 0.0}})
    with pytest.raises(ValueError, match=r"Guidance\.scale must be >= 1\.0, got 0\.5"):
        DemoConfig().updated({"guidance": {"scale": 0.5}})
    with pytest.raises(ValueError, match=r"TrainSettings\.mixed_precision must be one of"):
        DemoConfig().updated({"train": {"mixed_precision": "fp16"}})
    assert resolve_precision("no") == "no" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("bf16", "no")


def test_auto_precision_is_fp32_when_torch_kernels_stop_at_avx2(monkeypatch):
    """A bf16-capable CPU whose kernels are limited to AVX2 (ATEN_CPU_CAPABILITY=avx2, a laptop's case) trains
    in fp32: autocast there would run bf16 through AVX2 code without bf16 units."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert resolve_precision("auto") == "no"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_precision("auto") == "bf16"


def test_loss_curve_continues_passive_steps_into_action(tmp_path):
    """The action stage starts from the passive model: one curve over optimizer steps 10..N_p, N_p+10..,
    beside the from-scratch curve."""
    from actwm.demo.report import loss_series, plot_losses

    for name, steps in (("passive", [10, 20, 30]), ("action", [10, 20]), ("scratch", [10, 20, 30, 40, 50])):
        (tmp_path / name).mkdir()
        rows = "".join(f"{s},{1.0 / s}\n" for s in steps)
        (tmp_path / name / "metrics.csv").write_text("step,loss\n" + rows)
    runs = {n: tmp_path / n for n in ("passive", "action", "scratch")}
    series = loss_series(runs)
    assert series["EgoWM: passive, then action"] == ([10, 20, 30, 40, 50], [0.1, 0.05, 1 / 30, 0.1, 0.05])
    assert series["from scratch (actions from step 0)"][0] == [10, 20, 30, 40, 50]
    assert plot_losses(runs, tmp_path / "losses.png", passive_steps=30) == series


def test_report_plots_fit_a_1280_px_page(demo):
    from PIL import Image

    from actwm.demo.report import MAX_FIGURE_PX

    cfg, _ = demo
    for name in ("metrics.png", "losses.png"):
        with Image.open(Path(cfg.out) / "assets" / name) as img:
            assert img.width <= MAX_FIGURE_PX <= 1280 - 2 * 60, (name, img.width)  # body width + page margins
    html = (Path(cfg.out) / "report.html").read_text()
    assert f"max-width:{MAX_FIGURE_PX}px" in html and "max-width:100%" in html


def test_demo_closed_loop_stage_reports_three_agents(demo):
    """metrics.json["planning"]: no world model, the demo's FINAL action checkpoint and the flagged oracle, on one
    episode set of planning scenes, with SR / SPL intervals and an SR-vs-M sweep; report.html shows them."""
    from actwm.planning.worlds import checkpoint_sha256

    cfg, metrics = demo
    plan = json.loads(open(f"{cfg.out}/metrics.json").read())["planning"]
    assert plan == json.loads(json.dumps(metrics["planning"]))
    agents = plan["agents"]
    assert set(agents) == {"none", "action", "oracle"}
    ids = {a["fingerprint"]["episode_set"]["id"] for a in agents.values()}
    assert len(ids) == 1 and plan["episode_set"]["id"] in ids
    for name, a in agents.items():
        s = a["summary"]
        assert s["n"] == cfg.plan.episodes and 0.0 <= s["success_rate"] <= 1.0
        lo, hi = s["success_rate_ci95"]
        assert 0.0 <= lo <= s["success_rate"] <= hi <= 1.0 and "spl" in s
        assert s["oracle"] is (name == "oracle")
        assert s["proposer"] == "base"  # the same base-policy proposals for every agent
        assert [e["scene_seed"] for e in a["episodes"]] == [e["scene_seed"] for e in agents["none"]["episodes"]]
    wm = agents["action"]["fingerprint"]["agent"]["world_model"]
    final = Path(cfg.out) / "runs" / "action" / "final"
    assert wm["checkpoint_sha256"] == checkpoint_sha256(final)
    assert wm["frame_step"] == [cfg.data.frame_step.translation, cfg.data.frame_step.rotation]
    assert [p["proposals"] for p in agents["action"]["sweep"]] == list(cfg.plan.sweep)
    assert a["fingerprint"]["demo"]["plan"]["planner"]["base_margin"] == cfg.plan.planner.base_margin
    assert all(ep["scene_seed"] >= 2_000_000_000 for ep in agents["none"]["episodes"])
    html = (Path(cfg.out) / "report.html").read_text()
    assert "Closed loop: ImageNav" in html and "assets/plan_strip.png" in html
    assert (Path(cfg.out) / "assets" / "plan_strip.png").is_file()


def test_paired_futures_real_rows_are_the_executed_plans(demo):
    """The 'real' future of each plan is what the task reaches executing that plan step by step."""
    import numpy as np

    from actwm.demo.planning_stage import imagenav_task, make_world, paired_futures
    from actwm.pixels import uint8_to_unit
    from actwm.planning.interface import STOP
    from actwm.planning.policy import TemplateMatchPolicy

    cfg, _ = demo
    horizon, size, seed = cfg.plan.planner.horizon, cfg.data.size, cfg.seed
    task = imagenav_task(cfg)
    try:
        eps = task.episodes(seed=seed, n=1)
        world = make_world("action", cfg, Path(cfg.out) / "runs" / "action" / "final")
        imag, real, goals = paired_futures(task, world, eps, 3, horizon, seed)
        assert imag.shape == real.shape == (1, 3, horizon, 3, size, size)
        obs = task.reset(eps[0])
        proposer = TemplateMatchPolicy()
        proposer.reset(task.vocabulary, np.random.default_rng([seed * 100_000 + eps[0].index, 7]))
        plans = proposer.propose(obs, 3, horizon)
        assert len({tuple(p) for p in plans.tolist()}) > 1
        for i, plan in enumerate(plans):
            rgb, frames = task.reset(eps[0]).rgb, []
            for a in plan:
                if int(a) != STOP:  # stop moves nothing (as OracleWorld imagines it)
                    rgb = task.step(a).rgb
                frames.append(rgb)
            np.testing.assert_array_equal(real[0, i], np.asarray(uint8_to_unit(np.stack(frames))))
        assert not np.allclose(imag[0, 0], imag[0, 1]) or (plans[0] == plans[1]).all()
        assert np.array_equal(goals[0], eps[0].goal_image)
    finally:
        task.close()


def test_no_plan_skips_the_closed_loop_stage(tmp_path):
    from actwm.demo.pipeline import DemoState, StageClock
    from actwm.demo.planning_stage import stage_plan

    cfg = DemoConfig.quick(out=str(tmp_path), plan={"enabled": False})
    state = DemoState(cfg=cfg, out=tmp_path, clock=StageClock(tmp_path / "timings.json"))
    stage_plan(state)
    assert "planning" not in state.metrics and not state.sections and not (tmp_path / "planning").exists()


def test_announced_demo_time_comes_from_the_measured_passive_steps(capsys):
    """The demo says up front how long all of it will take here, from its first passive steps timed alone: on
    the reference machine they take 0.218-0.232 s after about 31 s of simulation and probing, and the full
    demo took 12 min 50 s (quiet) to 14 min 53 s (a slower day); the announced range holds both."""
    from actwm.demo.pipeline import announce_demo_time

    line = announce_demo_time(DemoConfig(), 0.225, elapsed=31.0)
    assert "0.225 s/step" in line and "about 12-15 min in all, 9-12 min of it training" in line
    assert "--no-scratch" not in line and line in capsys.readouterr().out
    slow = announce_demo_time(DemoConfig(), 0.45, elapsed=31.0)  # twice as slow: training time doubles
    assert "18-24 min of it training" in slow and "--no-scratch, --no-plan, or --quick" in slow
    eager = DemoConfig().updated({"train": {"scratch": False, "compile": False}})  # action steps cost passive ones
    assert "11-14 min of it training" in announce_demo_time(eager, 0.225)
    assert "about 41-47 s in all, 26-32 s of it training" in announce_demo_time(DemoConfig.quick(), 0.2, elapsed=4)
    assert announce_demo_time(DemoConfig(), None) is None


def test_passive_stage_times_its_first_steps_then_finishes_bit_exact(demo, tmp_path, monkeypatch):
    """The speed probe trains a fresh run's first steps and stops; the stage then resumes it: the same weights
    as one uninterrupted run. A started or finished run is not probed again."""
    from safetensors.torch import load_file

    from actwm.demo import stages

    cfg, _ = demo
    monkeypatch.setattr(stages, "PROBE_STEPS", 2)
    kw = dict(steps=4, passive=True, init_from=None, progress=False)
    data = Path(cfg.out) / "data"
    rate = stages.probe_speed(cfg, data, tmp_path / "probed", **kw)
    assert rate > 0 and stages.probe_speed(cfg, data, tmp_path / "probed", **kw) is None  # started: not again
    probed = stages.train_stage(cfg, data, tmp_path / "probed", **kw)
    plain = stages.train_stage(cfg, data, tmp_path / "plain", **kw)
    a, b = load_file(probed / "model.safetensors"), load_file(plain / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert stages.probe_speed(cfg, data, tmp_path / "plain", **kw) is None  # finished
    assert stages.probe_speed(cfg, data, tmp_path / "short", **dict(kw, steps=2)) is None  # too short to probe
