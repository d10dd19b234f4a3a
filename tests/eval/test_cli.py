"""`actwm eval` end to end: outputs (JSON, CSV, plot) and every bad-input case."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from actwm.cli import main as actwm_main
from actwm.video import write_frames, write_mp4


def main(argv: list[str]) -> int:
    """`actwm eval ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_main(["eval", *argv])


T, SIZE = 6, 32


def texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (3, 3), 0)


def video(seed: int, shift: int = 0, t_len: int = T, size: int = SIZE) -> np.ndarray:
    """A reddish textured 12 px box moving right over a textured background; `shift` offsets the box in
    frames >= 1."""
    bg = texture(size, size, seed)
    box = texture(12, 12, seed + 10) // 4 + np.array([180, 20, 20], np.uint8)
    frames = np.repeat(bg[None], t_len, 0)
    for t in range(t_len):
        x = 4 + t + (shift if t else 0)
        frames[t, 8:20, x : x + 12] = box
    return frames


def box_segmentation(t_len: int = T) -> np.ndarray:
    seg = np.full((t_len, SIZE, SIZE), -1, np.int32)
    for t in range(t_len):
        seg[t, 8:20, 4 + t : 16 + t] = 3
    return seg


def make_dirs(tmp_path, pred_shift=0, names=("a", "b")):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for i, name in enumerate(names):
        write_frames(gt / name, video(i))
        if i == 0:
            write_frames(pred / name, video(i, pred_shift))
        else:
            write_mp4(pred / f"{name}.mp4", video(i, pred_shift), fps=4, crf=0)
    return gt, pred


def run(tmp_path, gt, pred, *extra):
    out = tmp_path / "out.json"
    code = main(["--gt", str(gt), "--pred", str(pred), "--json", str(out), "--no-progress", *extra])
    return code, out


def test_outputs_json_csv_plot(tmp_path, capsys):
    gt, pred = make_dirs(tmp_path)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"a": [{"box": [3, 7, 17, 21]}], "b": [{"points": [[9, 13]]}]}))
    csv_path, plot_path = tmp_path / "out.csv", tmp_path / "out.png"
    code, out = run(
        tmp_path,
        gt,
        pred,
        "--metrics",
        "scs,psnr,ssim",
        "--horizons",
        "1,2,4",
        "--prompts",
        str(prompts),
        "--csv",
        str(csv_path),
        "--plot",
        str(plot_path),
    )
    assert code == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    assert set(res) == {"aggregate", "aggregate_at", "sequences", "meta"}
    seq_a, seq_b = res["sequences"]["a"], res["sequences"]["b"]
    assert seq_a["scs"] == {"1": 100.0, "2": 100.0, "4": 100.0}  # identical PNG frames
    assert seq_a["ssim"]["2"] == pytest.approx(1.0, abs=1e-4)
    assert min(seq_b["scs"].values()) > 85  # same video through H.264 (yuv420p chroma loss)
    assert 20 < seq_b["psnr"]["4"] < seq_a["psnr"]["4"]
    for h in ("1", "2", "4"):
        assert res["aggregate"]["scs"][h] == pytest.approx((seq_a["scs"][h] + seq_b["scs"][h]) / 2)
    assert set(res["sequences"]) == {"a", "b"}
    info = res["sequences"]["a"]["scs_info"]
    assert info["num_objects"] == 1 and info["trim_method"] == "flow" and info["trim"] == T
    assert res["meta"]["tracker"].startswith("classical-flow") and res["meta"]["num_sequences"] == 2
    assert res["meta"]["higher_is_better"] == {"scs": True, "psnr": True, "ssim": True}
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 3 * 3 * 3  # (aggregate + 2 sequences) x 3 metrics x 3 horizons
    scs_rows = [r for r in rows if r["metric"] == "scs"]
    assert all(r["tracker"].startswith("classical-flow") for r in scs_rows)
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scs" in capsys.readouterr().out


def test_scs_drops_for_shifted_prediction_and_at_values(tmp_path):
    gt, pred = make_dirs(tmp_path, pred_shift=4)
    np.save(gt / "a" / "segmentation.npy", box_segmentation())
    np.save(gt / "b" / "segmentation.npy", box_segmentation())
    code, out = run(tmp_path, gt, pred, "--metrics", "scs,psnr", "--horizons", "2,4", "--structures", "segmentation")
    assert code == 0
    res = json.loads(out.read_text())
    # the 12 px wide box is 4 px off in every predicted frame: IoU 8 / 16
    assert res["sequences"]["a"]["scs"]["4"] == pytest.approx(50.0, abs=2.0)
    assert res["aggregate_at"]["psnr"]["2"] is not None
    assert len(res["sequences"]["a"]["scs_info"]["per_frame"]) == T
    # automatic structures: the box (largest region) plus static background regions
    code, out = run(
        tmp_path, gt, pred, "--metrics", "scs", "--horizons", "2,4", "--structures", "auto", "--min-area", "40"
    )
    assert code == 0
    res = json.loads(out.read_text())
    info = res["sequences"]["a"]["scs_info"]
    assert info["object_areas"][0] == 144 and info["structures"] == "auto"
    assert 50.0 < res["sequences"]["a"]["scs"]["4"] < 100.0


def test_segmentation_structures_and_depth_trim(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    frames = video(0)
    write_frames(gt / "s", frames)
    write_frames(pred / "s", frames[1:])  # prediction without the context frame
    np.save(gt / "s" / "segmentation.npy", box_segmentation())
    k = np.repeat(np.array([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]])[None], T, 0)
    ext = np.stack([np.eye(4) for _ in range(T)])
    ext[3:, 0, 3] = -10.0  # the camera jumps 10 m sideways at frame 3: everything leaves the view
    np.save(gt / "s" / "depth.npy", np.full((T, SIZE, SIZE), 2.0, np.float32))
    np.save(gt / "s" / "intrinsics.npy", k)
    np.save(gt / "s" / "extrinsics.npy", ext)
    code, out = run(tmp_path, gt, pred, "--metrics", "scs", "--horizons", "1,2,4", "--structures", "segmentation")
    assert code == 0
    res = json.loads(out.read_text())
    info = res["sequences"]["s"]["scs_info"]
    assert info["object_ids"] == [3] and info["trim"] == 3 and info["trim_method"] == "depth"
    assert res["aggregate"]["scs"] == {"1": 100.0, "2": 100.0, "4": 100.0}  # frames 3.. are excluded
    assert res["aggregate_at"]["scs"]["4"] is None
    assert res["sequences"]["s"]["pred_included_context"] is False


def test_dispatcher_and_help(tmp_path, capsys):
    with pytest.raises(SystemExit):
        actwm_main(["eval", "--help"])
    assert "horizon h means the predicted frames 1..h" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")


@pytest.mark.parametrize(
    "case, message",
    [
        ("length", "sequence 'a': lengths differ"),
        ("size", "sequence 'a': frame sizes differ"),
        ("missing", "no prediction for ground-truth sequence(s) ['b']"),
        ("empty", "no sequences found"),
        ("empty_seq", "sequence 'b': "),
        ("prompt_outside", "sequence 'a', structure 0: box [0, 0, 40, 10] is outside the 32x32 image"),
        ("prompt_missing_seq", "sequence 'b': no entry in the prompts file"),
        ("horizon", "sequence 'a': has 6 frames but horizon 8"),
        ("metric", "unknown metric(s) ['fvd2']"),
        ("sam2_weights", "SAM2"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, case, message):
    gt, pred = make_dirs(tmp_path)
    args = ["--metrics", "scs,psnr", "--horizons", "2,4"]
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"a": [{"box": [3, 7, 17, 21]}], "b": [{"box": [3, 7, 17, 21]}]}))
    if case == "length":
        (pred / "a" / "000005.png").unlink()
        (pred / "a" / "000004.png").unlink()
    elif case == "size":
        for p in sorted((pred / "a").iterdir()):
            p.unlink()
        write_frames(pred / "a", video(0, size=24))
    elif case == "missing":
        (pred / "b.mp4").unlink()
    elif case == "empty":
        import shutil

        shutil.rmtree(pred)
        pred.mkdir()
    elif case == "empty_seq":
        (gt / "b").mkdir(exist_ok=True)
        for p in (gt / "b").iterdir():
            p.unlink()
    elif case == "prompt_outside":
        prompts.write_text(json.dumps({"a": [{"box": [0, 0, 40, 10]}], "b": [{"box": [3, 7, 17, 21]}]}))
        args += ["--prompts", str(prompts)]
    elif case == "prompt_missing_seq":
        prompts.write_text(json.dumps({"a": [{"box": [3, 7, 17, 21]}]}))
        args += ["--prompts", str(prompts)]
    elif case == "horizon":
        args = ["--metrics", "psnr", "--horizons", "2,8"]
    elif case == "metric":
        args = ["--metrics", "psnr,fvd2"]
    elif case == "sam2_weights":
        args += ["--tracker", "sam2", "--sam2-model", str(tmp_path / "sam2.1_hiera_tiny.pt")]
    code, out = run(tmp_path, gt, pred, *args, "--csv", str(tmp_path / "out.csv"))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert not out.exists() and not (tmp_path / "out.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp files left


def test_set_metric_is_aggregated_over_sequences_per_horizon(tmp_path, monkeypatch):
    """A set metric (FVD-like) gets the lists of gt / pred clips frames 1..h of every sequence."""
    import torch

    import actwm.eval.engine as engine
    import actwm.eval.metrics as metrics

    seen = []

    class FakeSet:
        name, higher_is_better, kind = "fvd", False, "set"

        def __call__(self, gts, preds):
            seen.append((len(gts), tuple(gts[0].shape)))
            return float(torch.stack([(g - p).abs().mean() for g, p in zip(gts, preds)]).mean())

    real_get = metrics.get_metric
    monkeypatch.setattr(engine, "get_metric", lambda name, **kw: FakeSet() if name == "fvd" else real_get(name, **kw))
    gt, pred = make_dirs(tmp_path, pred_shift=3)
    code, out = run(tmp_path, gt, pred, "--metrics", "psnr,fvd", "--horizons", "2,4")
    assert code == 0
    res = json.loads(out.read_text())
    assert seen == [(2, (2, 3, SIZE, SIZE)), (2, (4, 3, SIZE, SIZE))]
    assert res["aggregate"]["fvd"]["2"] > 0 and "fvd" not in res["sequences"]["a"]
    assert res["meta"]["kinds"]["fvd"] == "set" and res["meta"]["higher_is_better"]["fvd"] is False


def test_sam2_tracker_through_the_cli(tmp_path):
    """`--tracker sam2` runs the real SAM2 loading and tracking path (random weights in the official
    checkpoint format: plumbing only, the score itself is meaningless) and the report names the tracker."""
    pytest.importorskip("sam2")
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    model = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=["++model.image_size=64"],
    )
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    gt, pred = make_dirs(tmp_path, names=("a",))
    np.save(gt / "a" / "segmentation.npy", box_segmentation())
    code, out = run(
        tmp_path,
        gt,
        pred,
        "--metrics",
        "scs",
        "--horizons",
        "2",
        "--structures",
        "segmentation",
        "--tracker",
        "sam2",
        "--sam2-model",
        str(ckpt),
        "--sam2-image-size",
        "64",
        "--csv",
        str(tmp_path / "o.csv"),
    )
    assert code == 0
    res = json.loads(out.read_text())
    assert res["meta"]["tracker"] == "sam2(sam2.1_hiera_tiny.pt@64)"
    assert res["sequences"]["a"]["scs_info"]["tracker"] == res["meta"]["tracker"]
    assert 0.0 <= res["aggregate"]["scs"]["2"] <= 100.0
    assert "sam2(sam2.1_hiera_tiny.pt@64)" in (tmp_path / "o.csv").read_text()


def test_unwritable_output_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    """A writable --plot and an unwritable --csv: one error naming --csv, nothing computed, nothing written."""
    import actwm.eval.cli as cli

    def no_compute(*args, **kwargs):
        raise AssertionError("evaluated before checking the output paths")

    monkeypatch.setattr(cli, "evaluate", no_compute)
    gt, pred = make_dirs(tmp_path)
    (tmp_path / "file.txt").write_text("not a directory")
    plot = tmp_path / "plot.png"
    code, out = run(
        tmp_path, gt, pred, "--metrics", "psnr", "--plot", str(plot), "--csv", str(tmp_path / "file.txt/o.csv")
    )
    err = capsys.readouterr().err
    assert code == 2 and "--csv" in err and "is not a directory" in err
    assert not plot.exists() and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outputs_are_written_all_or_none(tmp_path, capsys, monkeypatch):
    """A failure while writing the second output leaves no plot, no CSV, no JSON and no temp file."""
    import actwm.eval.cli as cli

    def full_disk(results):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "results_csv", full_disk)
    gt, pred = make_dirs(tmp_path)
    plot, csv_path = tmp_path / "plot.png", tmp_path / "out.csv"
    code, out = run(
        tmp_path, gt, pred, "--metrics", "psnr", "--horizons", "2,4", "--plot", str(plot), "--csv", str(csv_path)
    )
    assert code == 2 and "nothing was written" in capsys.readouterr().err
    assert not plot.exists() and not csv_path.exists() and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_temp_files_of_a_killed_run_are_cleaned(tmp_path):
    """A writer SIGKILLed inside `atomic_path` leaves a 0-byte hidden temp file; the next eval removes it."""
    import signal
    import subprocess
    import sys

    gt, pred = make_dirs(tmp_path)
    kill = (
        "import os, signal\nfrom actwm.io import atomic_path\n"
        f"with atomic_path({str(tmp_path / 'out.json')!r}):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", kill], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert len(left) == 1 and left[0].stat().st_size == 0
    code, out = run(tmp_path, gt, pred, "--metrics", "psnr", "--horizons", "2,4")
    assert code == 0 and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
