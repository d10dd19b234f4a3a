"""`actwm demo` end to end at a minimal size: every stage runs, outputs are complete, a re-run resumes."""

import json
from pathlib import Path

import pytest

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
        train_episodes=3,
        test_episodes=2,
        episode_frames=20,
        passive_steps=3,
        action_steps=3,
        batch_size=2,
        eval_clips=2,
        eval_frames=17,
        scratch=True,
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
    assert saved["guidance"] == cfg.guidance > 1.0
    for model in ("action", "scratch"):
        unguided = saved[model]["unguided"]
        assert unguided["guidance"] == 1.0 and set(unguided["psnr_gap_db"]) == {"2", "4", "8", "16"}
        assert (Path(out) / "rollouts" / f"{model}_unguided" / "done.json").is_file()
    train_cfg = json.loads((Path(out) / "runs" / "action" / "final" / "train_config.json").read_text())
    assert train_cfg["action_dropout"] == cfg.action_dropout
    assert train_cfg["mixed_precision"] == resolve_precision(cfg.mixed_precision)
    html = open(f"{out}/report.html").read()
    assert "assets/metrics.png" in html and ".gif" in html
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

    def no_training(*args, **kwargs):
        raise AssertionError("a finished demo trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    again = run_demo(cfg)  # every stage finds its output and skips
    assert again["true"] == metrics["true"]
    assert weights and [w.stat().st_mtime_ns for w in weights] == stamps


def test_demo_refuses_other_settings_in_same_dir(demo):
    cfg, _ = demo
    with pytest.raises(ValueError, match="other settings"):
        run_demo(DemoConfig.quick(out=cfg.out))


def test_demo_config_rejects_bad_sampling_settings():
    with pytest.raises(ValueError, match="action_dropout"):
        DemoConfig(guidance=2.0, action_dropout=0.0)
    with pytest.raises(ValueError, match="guidance"):
        DemoConfig(guidance=0.5)
    with pytest.raises(ValueError, match="mixed_precision"):
        DemoConfig(mixed_precision="fp16")
    assert resolve_precision("no") == "no" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("bf16", "no")


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
