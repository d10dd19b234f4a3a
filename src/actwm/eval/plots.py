"""Plot each metric against the prediction horizon (matplotlib, Agg backend, atomic write)."""

from __future__ import annotations

import math
from pathlib import Path

from actwm.io import atomic_path

__all__ = ["plot_horizons"]


def plot_horizons(
    aggregate: dict[str, dict[str, float | None]],
    path: str | Path,
    *,
    at: dict[str, dict[str, float | None]] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    title: str | None = None,
) -> None:
    """One panel per metric: the mean over frames 1..h (solid) and, if given, the value at frame h (dashed).

    Args:
        aggregate: `{metric: {str(h): value or None}}`.
        path: output image (`.png`, `.pdf`, `.svg`), written atomically.
        at: same layout, per-frame "at h" values.
        higher_is_better: `{metric: bool}` shown in each panel's title as an arrow.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(aggregate)
    if not names:
        raise ValueError("nothing to plot: no metrics")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        series = [("mean over 1..h", aggregate[name], "-o")]
        if at and name in at:
            series.append(("at frame h", at[name], "--s"))
        for label, values, style in series:
            pts = [(int(h), v) for h, v in values.items() if v is not None]
            if pts:
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        arrow = ""
        if higher_is_better and name in higher_is_better:
            arrow = " (higher better)" if higher_is_better[name] else " (lower better)"
        ax.set_title(name.upper() + arrow, fontsize=10)
        ax.set_xlabel("horizon h (predicted frames)")
        hs = sorted(int(h) for h in aggregate[name])
        if hs:
            ax.set_xticks(hs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=(path.suffix.lstrip(".") or "png"))
    plt.close(fig)
