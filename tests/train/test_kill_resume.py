"""A training process killed with SIGKILL and restarted with --resume loses only the steps since its
last checkpoint, leaves no corrupt checkpoint, and then repeats the uninterrupted run exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from actwm.models.world_model import WorldModel
from actwm.train import TrainConfig, train
from actwm.train import checkpoint as ckpt

STEPS = 80


def _args(store, out) -> list[str]:
    return [
        "--data",
        str(store),
        "--out",
        str(out),
        "--model",
        "wan2.1-tiny",
        "--context",
        "1",
        "--horizon",
        "4",
        "--size",
        "16",
        "--steps",
        str(STEPS),
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "5",
        "--keep-last",
        "2",
        "--threads",
        "1",
        "--cpu",
        "--log-every",
        "1",
        "--set",
        "seed=3",
    ]


def test_sigkill_then_resume(tmp_path, store):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "stderr.txt", "wb")  # a file, not a pipe: a full pipe would stall the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "actwm.train.cli", *_args(store, out), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    try:
        while not latest.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text(errors="replace")[-2000:]

    done = ckpt.list_checkpoints(out)
    assert done, "the first checkpoint appeared before the kill"
    for d in done:  # every visible checkpoint is whole, matches its checksums and loads
        assert ckpt.verify(d) is None, d
        WorldModel.load(d)
        assert ckpt.load_train_state(d)["step"] == ckpt.step_of(d)
    # debris of a write interrupted at the worst moment must be ignored and cleaned
    junk = out / "checkpoints" / ".tmp-step-0000999-1-deadbeef"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"\0" * 10)

    from actwm.train.cli import resolve_config

    cfg, _ = resolve_config(_args(store, out) + ["--resume"])  # threads=1, as in the killed process
    resumed = train(cfg, progress=False)
    reference = train(cfg.replace(out=str(tmp_path / "ref"), resume=False), progress=False)
    assert resumed.start_step == ckpt.step_of(done[-1]) >= 5
    assert not junk.exists()
    assert sorted(str(p.relative_to(out)) for p in out.rglob(".*")) == []  # no leftovers of the killed writer
    assert resumed.losses == reference.losses and len(resumed.losses) == STEPS
    a = torch.load(ckpt.find_latest(out) / ckpt.TRAIN_STATE, weights_only=True)
    assert a["step"] == STEPS
    rows = (out / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, STEPS + 1))
    assert (
        TrainConfig.from_dict(
            ckpt.read_json_safe(out / "checkpoints" / ckpt.step_name(STEPS) / "train_config.json")
        ).seed
        == 3
    )
