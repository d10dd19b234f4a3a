"""report.html for planning results: summary tables and the success-rate-vs-M plot (inference-time scaling)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from actwm.io import atomic_path, atomic_write_text

COLUMNS = (
    "world_model",
    "proposer",
    "proposals",
    "scorer",
    "stop",
    "oracle",
    "n",
    "success_rate",
    "spl",
    "spl_actions",
    "path_length",
    "actions",
    "imagined_plans_per_episode",
    "seconds_per_episode",
)


def _fmt(key: str, summary: dict[str, Any]) -> str:
    v = summary.get(key)
    if isinstance(v, float):
        ci = summary.get(f"{key}_ci95")
        text = f"{v:.3f}"
        return text + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    return html.escape(str(v))


def summary_table(rows: list[dict[str, Any]]) -> str:
    """An HTML table, one row per summary (95% intervals in brackets)."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c, r)}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    return f"<table border=1 cellspacing=0 cellpadding=4><tr>{head}</tr>{body}</table>"


def plot_sweep(sweeps: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """SR (with 95% intervals) against M, one line per world model; written atomically."""
    import matplotlib  # lazy: plotting is optional and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in sweeps.items():
        ms = [p["proposals"] for p in points]
        sr = [p["summary"]["success_rate"] for p in points]
        lo = [max(0.0, p["summary"]["success_rate"] - p["summary"]["success_rate_ci95"][0]) for p in points]
        hi = [max(0.0, p["summary"]["success_rate_ci95"][1] - p["summary"]["success_rate"]) for p in points]
        ax.errorbar(ms, sr, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("proposals imagined per decision (M)")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(results: list[dict[str, Any]], directory: str | Path) -> Path:
    """report.html (+ sr_vs_m.png when a result holds a sweep) for one or more `runner.run` results."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts = ["<html><head><meta charset='utf-8'><title>actwm plan</title></head><body style='max-width:1240px'>"]
    parts.append("<h1>Closed-loop planning</h1>")
    parts.append(summary_table([r["summary"] for r in results]))
    sweeps = {r["summary"]["world_model"]: r["sweep"] for r in results if r.get("sweep")}
    if sweeps:
        plot_sweep(sweeps, directory / "sr_vs_m.png")
        parts.append("<h2>Success rate vs proposals (M)</h2><img src='sr_vs_m.png' style='max-width:100%'>")
        parts.append(summary_table([p["summary"] for s in sweeps.values() for p in s]))
    for r in results:
        fp = html.escape(json.dumps(r["fingerprint"], indent=1, default=str))
        parts.append(f"<h3>Fingerprint ({html.escape(str(r['summary']['world_model']))})</h3><pre>{fp}</pre>")
    parts.append("</body></html>")
    path = directory / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
