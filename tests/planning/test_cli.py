"""`actwm plan`: an end-to-end run with its JSON and report, and every bad input refused before an episode."""

import json

import numpy as np
import pytest
import torch

from actwm.models.world_model import WorldModel
from actwm.planning.cli import main
from actwm.planning.runner import PlanRunConfig, build_agent, build_task, build_world, prepare
from actwm.video import read_video

SMALL = ["--episodes", "1", "--budget", "4", "--proposals", "4", "--horizon", "3", "--execute", "3", "--size", "32"]


def test_plan_writes_results_fingerprint_and_report(tmp_path):
    out = tmp_path / "plan.json"
    argv = ["--world-model", "oracle", *SMALL, "--seed", "2", "--json", str(out), "--report", str(tmp_path / "r")]
    argv += ["--sweep-proposals", "1,4", "--no-progress", "--videos", str(tmp_path / "v")]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    s = result["summary"]
    for key in ("success_rate", "success_rate_ci95", "spl", "spl_actions", "path_length", "n"):
        assert key in s
    assert s["n"] == 1 and s["oracle"] is True and s["world_model"] == "oracle"
    assert len(result["episodes"]) == 1 and result["episodes"][0]["actions"] <= 4
    fp = result["fingerprint"]
    assert fp["config"]["planner"]["proposals"] == 4 and fp["config"]["seed"] == 2 and fp["episode_set"]["seed"] == 2
    assert len(fp["episode_set"]["id"]) == 16 and fp["actwm_version"]
    assert [p["proposals"] for p in result["sweep"]] == [1, 4]
    assert result["sweep"][1]["episodes"] == result["episodes"]  # M = 4 is the main run
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "sr_vs_m.png").is_file()
    frames, _ = read_video(tmp_path / "v" / "episode0000_M4.mp4")
    assert frames.shape == (result["episodes"][0]["actions"], 32, 96, 3)  # real | imagined | goal per action


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "pointnav"], r"--task must be one of \('imagenav', 'push'\), got 'pointnav'"),
        (["--proposer", "beam"], r"--proposer must be one of \(.*\), got 'beam'"),
        (["--sweep-proposals", "1,x"], "--sweep-proposals"),
        (["--horizon", "2", "--execute", "3"], "execute"),
        (["--scorer", "psnr"], "unknown scorer metric"),
        (["--world-model", "no/such/dir"], "world model 'no/such/dir'"),
    ],
)
def test_bad_input_is_one_clear_error_and_no_output(tmp_path, extra, message):
    out = tmp_path / "plan.json"
    with pytest.raises(ValueError, match=message):
        main([*SMALL, *extra, "--json", str(out), "--no-progress"])
    assert not out.exists()


def test_world_model_with_the_wrong_action_space_is_refused_before_any_episode(tmp_path, monkeypatch):
    torch.manual_seed(0)
    WorldModel.from_preset("wan2.1-tiny", "ee7", image_size=[32, 32], clip_frames=9).save(tmp_path / "ee7")
    ran = []
    monkeypatch.setattr("actwm.planning.loop.Agent.run_episode", lambda *a, **k: ran.append(1))
    with pytest.raises(ValueError, match="does not fit task 'imagenav'"):
        main([*SMALL, "--world-model", str(tmp_path / "ee7"), "--json", str(tmp_path / "o.json"), "--no-progress"])
    assert ran == [] and not (tmp_path / "o.json").exists()


def test_goal_image_of_the_wrong_size_is_refused_before_any_episode():
    cfg = PlanRunConfig(size=32, episodes=1, budget=2)
    task = build_task(cfg)
    try:
        agent = build_agent(cfg, build_world(cfg))
        episodes = list(task.episodes(seed=0, n=1))

        class _Wrong:
            index, goal_image = 7, np.zeros((64, 64, 3), np.uint8)

        with pytest.raises(ValueError, match="goal image of episode 7 is 64x64 but observations are 32x32"):
            prepare(cfg, task, agent, [*episodes, _Wrong()])
    finally:
        task.close()


def test_push_runs_with_its_own_base_policy_and_with_cem(tmp_path):
    out = tmp_path / "push.json"
    push = [
        "--task",
        "push",
        "--episodes",
        "1",
        "--budget",
        "2",
        "--proposals",
        "3",
        "--horizon",
        "2",
        "--execute",
        "1",
        "--size",
        "32",
    ]
    assert main([*push, "--json", str(out), "--no-progress"]) == 0  # proposer "base": the push base policy
    base = json.loads(out.read_text())
    assert base["summary"]["proposer"] == "push-base" and base["summary"]["scorer"].startswith("block-to-target")
    assert base["fingerprint"]["stop_threshold"] == 0.02  # metres (push's calibrated stop), not a similarity
    out.unlink()
    assert (
        main(
            [
                *push,
                "--proposer",
                "cem",
                "--iterations",
                "2",
                "--world-model",
                "oracle",
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["summary"]["n"] == 1 and result["episodes"][0]["steps"] <= 2
    assert result["fingerprint"]["episode_set"]["task"] == "push"


def test_compile_flag_reaches_a_checkpoint_worlds_rollout(monkeypatch):
    """`actwm plan --compile` -> PlanRunConfig.compile -> the checkpoint world's RolloutConfig.compile."""
    import actwm.planning.runner as runner
    from actwm.cliargs import config_from_args
    from actwm.planning.cli import parser

    seen = {}
    monkeypatch.setattr(runner, "make_world_model", lambda spec, **options: seen.setdefault(spec, options))
    for flags, want in (([], False), (["--compile"], True)):
        args = parser().parse_args(["--world-model", "runs/x", "--json", "unused.json", *flags])
        build_world(config_from_args(PlanRunConfig, args))
        assert seen.pop("runs/x")["rollout_cfg"].compile is want
