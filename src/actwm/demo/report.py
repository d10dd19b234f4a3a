"""The demo's report: side-by-side GIFs, metric-vs-horizon and loss plots, report.html.

Every image fits a 1280 px wide page: figures are at most `MAX_FIGURE_PX` pixels wide, and the page
scales images down to its width.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after selecting the Agg backend
import numpy as np  # noqa: E402

from actwm.io import atomic_path, atomic_write_text  # noqa: E402
from actwm.video import read_frames, write_gif  # noqa: E402

MAX_FIGURE_PX = 1100  # the page body's max width (CSS below); fits a 1280 px window
DPI = 110


def _save(fig, path: Path) -> None:
    width = fig.get_size_inches()[0] * DPI
    if width > MAX_FIGURE_PX + 0.5:
        raise ValueError(f"{path}: figure is {width:.0f} px wide, more than the page's {MAX_FIGURE_PX} px")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)


def side_by_side_gif(rollouts: Path, name: str, path: Path, scale: int = 4, fps: float = 5.0) -> None:
    """ground truth | true actions | shuffled actions, upscaled, as one GIF."""
    rows = [read_frames(rollouts / kind / name) for kind in ("gt", "true", "shuffled")]
    t = min(len(r) for r in rows)
    sep = np.full((t, rows[0].shape[1], 2, 3), 255, np.uint8)
    strip = np.concatenate([rows[0][:t], sep, rows[1][:t], sep, rows[2][:t]], axis=2)
    strip = strip.repeat(scale, axis=1).repeat(scale, axis=2)
    write_gif(path, strip, fps)


def _series_styles(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], tuple[str, str, str]]]:
    series = {
        "action": summary["action"],
        "scratch": summary.get("scratch"),
        "action, guidance 1": summary["action"].get("unguided"),
    }
    g = f", guidance {summary['action'].get('guidance', 1.0):g}"
    styles = {
        ("action", "true"): (f"EgoWM fine-tuned{g}, true actions", "C0", "-"),
        ("action", "shuffled"): (f"EgoWM fine-tuned{g}, shuffled actions", "C0", "--"),
        ("scratch", "true"): (f"from scratch{g}, true actions", "C1", "-"),
        ("scratch", "shuffled"): (f"from scratch{g}, shuffled actions", "C1", "--"),
        ("action, guidance 1", "true"): ("EgoWM fine-tuned, guidance 1, true", "C7", "-"),
        ("action, guidance 1", "shuffled"): ("EgoWM fine-tuned, guidance 1, shuffled", "C7", "--"),
    }
    return series, styles


def plot_comparison(summary: dict[str, Any], path: Path, horizons: tuple[int, ...]) -> None:
    """One panel per metric against the horizon, every model and action kind; the legend below the panels."""
    metrics = [m for m in ("psnr", "ssim", "scs") if m in summary["action"]["true"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(min(3.3 * len(metrics), MAX_FIGURE_PX / DPI), 4.2))
    axes = np.atleast_1d(axes)
    series, styles = _series_styles(summary)
    for ax, m in zip(axes, metrics):
        for (model, kind), (label, colour, ls) in styles.items():
            if series[model] is None:
                continue
            ys = [series[model][kind][m].get(str(h)) for h in horizons]
            ax.plot(horizons, [np.nan if y is None else y for y in ys], ls, color=colour, marker="o", label=label)
        ax.set_xlabel("horizon h (mean over 1..h)", fontsize=8)
        ax.set_title(m.upper() + (" (0-100)" if m == "scs" else ""))
        ax.set_xticks(list(horizons))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _save(fig, path)


def loss_series(runs: dict[str, Path]) -> dict[str, tuple[list[int], list[float]]]:
    """Training-loss curves over optimizer steps: `{label: (steps, losses)}`.

    The action stage continues from the passive model, so passive then action is one curve whose action
    part is shifted by the passive stage's last step; the from-scratch run is its own curve.
    """

    def read(name: str) -> tuple[list[int], list[float]]:
        f = runs.get(name)
        if f is None or not (f / "metrics.csv").is_file():
            return [], []
        with open(f / "metrics.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]

    out: dict[str, tuple[list[int], list[float]]] = {}
    p_steps, p_loss = read("passive")
    a_steps, a_loss = read("action")
    offset = p_steps[-1] if p_steps else 0
    if p_steps or a_steps:
        out["EgoWM: passive, then action"] = (p_steps + [s + offset for s in a_steps], p_loss + a_loss)
    s_steps, s_loss = read("scratch")
    if s_steps:
        out["from scratch (actions from step 0)"] = (s_steps, s_loss)
    return out


def plot_losses(runs: dict[str, Path], path: Path, passive_steps: int | None = None) -> dict[str, Any]:
    """Plot `loss_series(runs)` (a dotted line where the action stage starts); returns the series."""
    series = loss_series(runs)
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for label, (steps, losses) in series.items():
        ax.plot(steps, losses, label=label)
    if passive_steps:
        ax.axvline(passive_steps, color="0.5", ls=":", lw=1, label="action stage starts")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return series


def baseline_line(metrics: dict[str, Any]) -> str | None:
    """The printed summary's line for the copy-frame-0 baseline's PSNR (None when metrics has no baseline)."""
    copy = metrics.get("copy_first_frame", {}).get("psnr")
    if not copy:
        return None
    return (
        "(no model, frame 0 copied as every prediction: "
        + ", ".join(f"h={h}: {v:.2f}" for h, v in copy.items())
        + " dB)"
    )


def write_report(out: Path, metrics: dict[str, Any], gifs: list[str], sections: list[str] | None = None) -> Path:
    """`out/report.html`: tables (each with the copy-frame-0 baseline's rows when metrics has them), plots, GIFs;
    `sections` (HTML) from extra stages go before the cost table."""

    def baseline(m: str) -> list[tuple[str, Any]]:  # no model: frame 0 copied as every prediction
        copy = metrics.get("copy_first_frame", {}).get(m)
        return [("no model: copy frame 0", copy)] if copy else []

    def table(res: dict[str, Any]) -> str:
        hs = [str(h) for h in metrics["horizons"]]
        rows = []
        for m in ("psnr", "ssim", "scs"):
            for kind, vals in (("true", res["true"].get(m)), ("shuffled", res["shuffled"].get(m)), *baseline(m)):
                if vals is None:
                    continue
                cells = "".join(f"<td>{'' if vals.get(h) is None else f'{vals[h]:.3f}'}</td>" for h in hs)
                rows.append(f"<tr><td>{m.upper()}</td><td>{kind}</td>{cells}</tr>")
        head = "".join(f"<th>h={h}</th>" for h in hs)
        return f"<table><tr><th>metric</th><th>actions</th>{head}</tr>{''.join(rows)}</table>"

    gap = metrics["action"]["psnr_gap_db"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>actwm demo report</title>",
        f"<style>body{{font-family:sans-serif;max-width:{MAX_FIGURE_PX}px;margin:2em auto}}"
        "td,th{padding:3px 9px;border-bottom:1px solid #ddd}"
        "img{image-rendering:pixelated;margin:4px;max-width:100%}</style>",
        "<h1>actwm demo: an action-conditioned world model of a simulated robot</h1>",
        f"<p>Backbone <b>{html.escape(metrics['model'])}</b> (tiny real diffusers class), trained on "
        f"{metrics['config']['data']['train_episodes']} simulated training scenes and evaluated on "
        f"{metrics['config']['data']['test_episodes']} held-out scenes it never saw. Horizon h = mean over predicted "
        "frames 1..h (frame 0 is given); 16-frame horizons are generated autoregressively in chunks.</p>",
        "<p><b>True-action PSNR minus shuffled-action PSNR</b> (dB): "
        + ", ".join(f"h={h}: {v:+.2f}" for h, v in gap.items())
        + "</p>",
        f"<p>Sampling: {metrics['config']['eval']['sample_steps']} Euler steps, classifier-free guidance on actions "
        f"{metrics['guidance']:g} at flow times t in ({metrics['config']['guidance']['interval'][0]:g}, "
        f"{metrics['config']['guidance']['interval'][1]:g}] (tables for guidance 1 follow each model).</p>",
        "<h2>EgoWM: passive stage, then action fine-tuning</h2>",
        table(metrics["action"]),
    ]
    if "unguided" in metrics["action"]:
        parts += ["<h3>same model, guidance 1</h3>", table(metrics["action"]["unguided"])]
    if "scratch" in metrics:
        parts += [
            "<h2>From scratch (actions from the first step, same total number of steps)</h2>",
            table(metrics["scratch"]),
        ]
        if "unguided" in metrics["scratch"]:
            parts += ["<h3>same model, guidance 1</h3>", table(metrics["scratch"]["unguided"])]
    parts += [
        "<h2>Metrics against horizon</h2><img src='assets/metrics.png'>",
        "<h2>Training loss</h2><img src='assets/losses.png'>",
        "<h2>Held-out rollouts</h2><p>left: ground truth · middle: true actions · right: shuffled actions</p>",
    ]
    parts += [f"<div><code>{html.escape(Path(g).stem)}</code><br><img src='{html.escape(g)}'></div>" for g in gifs]
    parts += list(sections or [])
    parts.append(f"<h2>Cost</h2><pre>{html.escape(json.dumps(metrics.get('timings', {}), indent=1))}</pre>")
    report = out / "report.html"
    atomic_write_text(report, "\n".join(parts))
    return report
