"""`actwm eval`: score predicted videos against ground truth, per sequence and per horizon.

A thin caller of `actwm.eval.engine.evaluate`: 1. check the options and that every output path can be
written (before any computing); 2. evaluate; 3. write the plot, CSV and JSON all or none (each through a temp
file; the temps are renamed only when every one of them was written). Temp files left by a killed run are
removed by the next run that writes the same outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actwm.cliargs import config_from_args
from actwm.errors import ArgumentParser
from actwm.eval.engine import FRAME_CONVENTION, EvalConfig, evaluate
from actwm.eval.outputs import check_outputs, stale_temps
from actwm.eval.plots import plot_horizons
from actwm.io import atomic_path

__all__ = ["main", "EvalOptions", "run_eval", "build_parser", "results_csv", "write_results", "FRAME_CONVENTION"]


@dataclass
class EvalOptions:
    """`actwm eval` settings: the two sequence folders, the output paths and what to compute."""

    gt: Path
    pred: Path
    json_out: Path
    config: EvalConfig
    csv_out: Path | None = None
    plot_out: Path | None = None

    def outputs(self) -> dict[str, Path]:
        """`{option: path}` of every requested output."""
        named = {"--json": self.json_out, "--csv": self.csv_out, "--plot": self.plot_out}
        return {k: Path(v) for k, v in named.items() if v is not None}


def _parse_ints(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from exc


def _parse_metric_options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, opt = key.partition(".")
        if not sep or not dot or not metric or not opt:
            raise ValueError(f"--metric-option: expected METRIC.KEY=VALUE, got {item!r}")
        parsed: Any = value
        for conv in (int, float):
            try:
                parsed = conv(value)
                break
            except ValueError:
                continue
        if value in ("true", "false"):
            parsed = value == "true"
        out.setdefault(metric, {})[opt] = parsed
    return out


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="actwm eval",
        description=(
            "Score predicted videos against ground truth. Each of --gt and --pred holds one sequence per "
            "subfolder of PNG/JPG frames or per video file, matched by name. Frame 0 is the given context "
            "frame (--context N: frames 0..N-1); horizon h means the predicted frames 1..h after the "
            "context. Reports, per metric and horizon, the mean over frames 1..h ('aggregate') and the "
            "value at frame h ('aggregate_at'). SCS is on the paper's 0-100 scale."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--gt", required=True, type=Path, help="ground-truth sequences folder")
    p.add_argument("--pred", required=True, type=Path, help="predicted sequences folder (same names)")
    p.add_argument(
        "--metrics",
        default="scs,psnr,ssim",
        help="comma list: scs,psnr,ssim,lpips,dreamsim,fvd,fid,controllability,traj,depth",
    )
    p.add_argument(
        "--horizons", default="2,4,8,16", help="comma list of horizons h (predicted frames after the context)"
    )
    p.add_argument("--json", required=True, type=Path, dest="json_out", help="results JSON")
    p.add_argument("--csv", type=Path, dest="csv_out", help="results CSV (sequence, metric, horizon, mean, at)")
    p.add_argument("--plot", type=Path, dest="plot_out", help="plot of each metric vs horizon (.png)")
    p.add_argument(
        "--context", type=int, default=1, help="number of given context frames at the start of each sequence"
    )
    p.add_argument(
        "--resize",
        type=int,
        default=None,
        help="resize frames to SIZE x SIZE for the frame metrics (e.g. 224 as NWM/EgoWM); SCS runs at native size",
    )
    _add_scs_arguments(p)
    p.add_argument(
        "--metric-option",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="option passed to get_metric, e.g. lpips.weights=/path/alexnet.pth (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_scs_arguments(p: argparse.ArgumentParser) -> None:
    """The SCS options: structures, tracker, trim, SAM2."""
    p.add_argument(
        "--structures",
        default=None,
        choices=["prompts", "segmentation", "auto"],
        help="SCS structures: from --prompts, from simulator segmentation (<seq>/segmentation.npy or <seq>.seg.npy, "
        "optional static_ids in <seq>/meta.json or <seq>.meta.json) or automatic colour regions "
        "(default: prompts if --prompts is given, else auto)",
    )
    p.add_argument(
        "--prompts", type=Path, help='JSON {"seq": [{"box": [x0,y0,x1,y1]}, {"points": [[x,y],...]}]} in GT pixels'
    )
    p.add_argument("--tracker", default="classical", choices=["classical", "sam2"], help="mask tracker for SCS")
    p.add_argument(
        "--trim",
        default="auto",
        choices=["auto", "flow", "depth", "none"],
        help="SCS trim: depth (needs depth/intrinsics/extrinsics side files), flow, "
        "auto (depth when available, else flow), none",
    )
    p.add_argument(
        "--sam2-model", default="facebook/sam2.1-hiera-tiny", help="SAM2 checkpoint file or hub id (local cache)"
    )
    p.add_argument("--sam2-config", default=None, help="SAM2 config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml")
    p.add_argument(
        "--sam2-image-size",
        type=int,
        default=None,
        help="SAM2 input resolution override (default: the config's 1024; smaller is faster on CPU)",
    )
    p.add_argument("--device", default="cpu", help="torch device for SAM2")
    p.add_argument(
        "--max-objects", type=int, default=8, help="at most this many structures per sequence (segmentation/auto)"
    )
    p.add_argument("--min-area", type=int, default=16, help="minimum structure area in pixels (segmentation/auto)")


def options_from_args(args: argparse.Namespace) -> EvalOptions:
    config = config_from_args(  # the options named as EvalConfig fields map 1:1; these need converting
        EvalConfig,
        args,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        horizons=_parse_ints(args.horizons, "--horizons"),
        structures=args.structures or ("prompts" if args.prompts else "auto"),
        metric_options=_parse_metric_options(args.metric_option),
        progress=not args.no_progress,
    )
    opts = EvalOptions(args.gt, args.pred, args.json_out, config, args.csv_out, args.plot_out)
    check_outputs(opts.outputs())
    return opts


# ------------------------------------------------------------------------------------------ outputs


def results_csv(results: dict[str, Any]) -> str:
    """CSV text: one row per (sequence, metric, horizon) plus `__aggregate__` rows; empty cells = no value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sequence", "metric", "horizon", "mean", "at", "tracker"])
    tracker = results["meta"].get("tracker") or ""

    def cell(v):
        return "" if v is None else f"{v:.6g}"

    for name, per_h in results["aggregate"].items():
        at = results["aggregate_at"].get(name, {})
        for h, v in per_h.items():
            w.writerow(["__aggregate__", name, h, cell(v), cell(at.get(h)), tracker if name == "scs" else ""])
    for seq, res in results["sequences"].items():
        for name in results["meta"]["metrics"]:
            if name not in res:
                continue
            for h, v in res[name].items():
                w.writerow([seq, name, h, cell(v), cell(res["at"][name].get(h)), tracker if name == "scs" else ""])
    return buf.getvalue()


def _plot(results: dict[str, Any], path: Path) -> None:
    meta = results["meta"]
    plot_horizons(
        results["aggregate"],
        path,
        at=results["aggregate_at"],
        higher_is_better=meta["higher_is_better"],
        title=f"{meta['num_sequences']} sequences" + (f", SCS tracker {meta['tracker']}" if meta["tracker"] else ""),
    )


def write_results(results: dict[str, Any], opts: EvalOptions) -> None:
    """Write the plot, CSV and JSON all or none: each goes to a temp file first; the temps are renamed over
    the targets only after every one was written (on any error all temps are removed)."""
    for path in opts.outputs().values():
        for stale in stale_temps(path):
            stale.unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        try:  # entered JSON first, so that it is renamed last (LIFO)
            temps = {opt: stack.enter_context(atomic_path(path)) for opt, path in opts.outputs().items()}
            if "--plot" in temps:
                _plot(results, temps["--plot"])
            if "--csv" in temps:
                temps["--csv"].write_text(results_csv(results), encoding="utf-8")
            temps["--json"].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot write the results ({exc}); nothing was written") from exc


def run_eval(opts: EvalOptions) -> dict[str, Any]:
    """Compute all results (nothing is written); returns the JSON-ready dict."""
    return evaluate(opts.gt, opts.pred, opts.config)


def _summary(results: dict[str, Any]) -> str:
    hs = [str(h) for h in results["meta"]["horizons"]]
    lines = [f"{'metric':<16}" + "".join(f"{'h=' + h:>10}" for h in hs)]
    for name, per_h in results["aggregate"].items():
        lines.append(
            f"{name:<16}" + "".join(f"{'-' if per_h.get(h) is None else format(per_h[h], '.4g'):>10}" for h in hs)
        )
    if results["meta"]["tracker"]:
        lines.append(f"SCS tracker: {results['meta']['tracker']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = options_from_args(args)  # 1. options and output paths
    results = run_eval(opts)  # 2. compute everything
    write_results(results, opts)  # 3. all outputs or none
    for note in results["meta"]["notes"]:
        print(f"actwm eval: {note}", file=sys.stderr)
    print(_summary(results))
    print(f"wrote {', '.join(str(p) for p in opts.outputs().values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
