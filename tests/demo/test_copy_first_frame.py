"""The demo's no-model baseline: every future frame predicted as the given frame 0."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from actwm.demo.config import DemoConfig
from actwm.demo.report import baseline_line, write_report
from actwm.demo.stages import score_copy_first_frame


def _clips(n: int = 2, frames: int = 5, size: int = 32) -> list[dict]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (n, 1, size, size, 3))
    drift = rng.integers(-40, 41, (n, frames, size, size, 3))  # frames differ from frame 0 by a varying amount
    video = np.clip(base + drift * np.arange(frames)[None, :, None, None, None] / frames, 0, 255).astype(np.uint8)
    return [
        {"name": f"c{i}", "frames": video[i], "actions": None, "segmentation": None, "static_ids": []} for i in range(n)
    ]


def _by_hand(clips: list[dict], h: int) -> tuple[float, float]:
    """Mean over clips of the mean over frames 1..h of PSNR / SSIM between frame i and frame 0."""
    psnr, ssim = [], []
    for c in clips:
        f = c["frames"].astype(np.float64) / 255
        psnr.append(np.mean([10 * np.log10(1 / np.mean((f[i] - f[0]) ** 2)) for i in range(1, h + 1)]))
        ssim.append(
            np.mean(
                [
                    structural_similarity(
                        f[i],
                        f[0],
                        channel_axis=-1,
                        data_range=1.0,
                        gaussian_weights=True,
                        sigma=1.5,
                        use_sample_covariance=False,
                    )
                    for i in range(1, h + 1)
                ]
            )
        )
    return float(np.mean(psnr)), float(np.mean(ssim))


def test_copy_first_frame_equals_the_metrics_of_repeated_frame_0_by_hand():
    cfg = DemoConfig().updated({"eval": {"frames": 5, "horizons": (2, 4), "scs": False}})
    clips = _clips()
    res = score_copy_first_frame(cfg, clips)
    assert set(res) == {"psnr", "ssim"}
    for h in (2, 4):
        psnr, ssim = _by_hand(clips, h)
        assert res["psnr"][str(h)] == pytest.approx(psnr, abs=1e-3)
        assert res["ssim"][str(h)] == pytest.approx(ssim, abs=2e-3)
    assert res["psnr"]["2"] > res["psnr"]["4"]  # frames drift away from frame 0


def test_report_table_and_printed_summary_carry_the_baseline(tmp_path):
    vals = {"psnr": {"2": 15.5}, "ssim": {"2": 0.3}}
    metrics = {
        "horizons": [2],
        "model": "wan2.1-i2v-tiny",
        "guidance": 1.0,
        "config": DemoConfig().to_dict(),
        "action": {"true": vals, "shuffled": vals, "psnr_gap_db": {"2": 0.0}},
        "copy_first_frame": {"psnr": {"2": 16.117}, "ssim": {"2": 0.397}},
    }
    page = write_report(tmp_path, metrics, []).read_text()
    assert "<td>PSNR</td><td>no model: copy frame 0</td><td>16.117</td>" in page
    assert "<td>SSIM</td><td>no model: copy frame 0</td><td>0.397</td>" in page
    assert "h=2: 16.12" in baseline_line(metrics)
    assert baseline_line({k: v for k, v in metrics.items() if k != "copy_first_frame"}) is None
