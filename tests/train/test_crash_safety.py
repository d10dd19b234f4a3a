"""Runs survive what crashes and disks leave behind: corrupt newest checkpoints, leftovers of killed writes,
damaged or foreign model directories (one ValueError naming the file), and outputs readable per the umask."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from actwm.models.world_model import WorldModel
from actwm.train import TrainConfig, train
from actwm.train import checkpoint as ckpt
from tests.train.conftest import DictDataset

KW = dict(steps=6, batch_size=2, lr=1e-3, checkpoint_every=2, keep_last=3, log_every=1, cpu=True, seed=1)


def _cfg(out, **kw) -> TrainConfig:
    return TrainConfig(out=str(out), **{**KW, **kw})


def _flip_bit_in_tensor_data(path) -> None:
    raw = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    raw[header + (len(raw) - header) // 2] ^= 0x10  # one bit of one weight; the header still parses
    path.write_bytes(bytes(raw))


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage", [("model.safetensors", _flip_bit_in_tensor_data), (ckpt.TRAIN_STATE, _truncate)], ids=["flip", "trunc"]
)
def test_resume_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, capsys, damage):
    ds = DictDataset(n=5, frames=5, size=16)
    full = train(_cfg(tmp_path / "full"), dataset=ds, progress=False)
    run = tmp_path / "run"
    train(_cfg(run), dataset=ds, progress=False, stop_after=4)
    newest = run / "checkpoints" / "step-0000004"
    name, spoil = damage
    spoil(newest / name)
    capsys.readouterr()
    resumed = train(_cfg(run, resume=True), dataset=ds, progress=False)
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "corrupt" in line]
    assert len(warning) == 1 and "step-0000004" in warning[0] and "resuming from step-0000002" in warning[0]
    assert resumed.start_step == 2
    assert resumed.losses == full.losses  # the previous good checkpoint repeats the uninterrupted run
    aside = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("corrupt-step-0000004")]
    assert len(aside) == 1  # kept for inspection, never resumed from again
    assert ckpt.verify(ckpt.find_latest(run)) is None


def test_leftovers_of_killed_writes_are_cleaned_and_outputs_follow_umask(tmp_path):
    ds = DictDataset(n=4, frames=5, size=16)
    run = tmp_path / "run"
    before = os.umask(0o022)
    try:
        train(_cfg(run), dataset=ds, progress=False, stop_after=2)
        planted = [
            run / "checkpoints" / ".latest.k2j4h5g6.tmp",
            run / ".metrics.abcd1234.tmp.csv",
            run / ".tmp-final-1a2b3c4d" / "model.safetensors",
            run / ".del-final-5e6f7a8b" / "config.json",
        ]
        for p in planted:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\0" * 64)
        result = train(_cfg(run, resume=True), dataset=ds, progress=False)
    finally:
        os.umask(before)
    hidden = sorted(str(p.relative_to(run)) for p in run.rglob(".*"))
    assert hidden == [], hidden
    files = [p for p in run.rglob("*") if p.is_file()]
    assert result.final_dir == run / "final" and (run / "final" / "model.safetensors") in files
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert all(m == "0o644" for m in modes.values()), modes  # checkpoints, final model, metrics, configs


def test_damaged_or_foreign_models_are_one_error_naming_the_file(tmp_path):
    ds = DictDataset(n=2, frames=5, size=16)
    good = tmp_path / "good"
    WorldModel.from_preset("wan2.1-tiny", "custom3").save(good)

    def variant(name, spoil):
        shutil.copytree(good, tmp_path / name)
        spoil(tmp_path / name)
        return tmp_path / name

    def no_backbone(d):
        cfg = json.loads((d / "config.json").read_text())
        del cfg["backbone"]
        (d / "config.json").write_text(json.dumps(cfg))

    cases = {
        "config.json": variant("nobackbone", no_backbone),
        "model.safetensors": variant("truncated", lambda d: _truncate(d / "model.safetensors")),
    }
    cases["model.safetensors "] = variant("empty", lambda d: (d / "model.safetensors").write_bytes(b""))
    for file, path in cases.items():
        cfg = _cfg(tmp_path / f"o-{path.name}", init_from=str(path), steps=1)
        with pytest.raises(ValueError, match=str(path / file.strip())):
            train(cfg, dataset=ds, progress=False)
    # resuming a run whose checkpoint is of another backbone
    run = tmp_path / "run"
    train(_cfg(run, steps=2, checkpoint_every=1), dataset=ds, progress=False, stop_after=1)
    with pytest.warns(UserWarning, match="changed settings"):
        with pytest.raises(ValueError, match=r"step-0000001/model\.safetensors"):
            train(_cfg(run, steps=2, resume=True, model="cosmos-tiny"), dataset=ds, progress=False)
