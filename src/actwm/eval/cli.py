"""`actwm eval`: score predicted videos against ground truth, per sequence and per horizon.

Everything is computed first; the JSON, CSV and plot are written (atomically) only when every sequence
succeeded, so a failed run leaves no partial results behind.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actwm.eval.sequences import side_file_hint
from actwm.io import atomic_write_json, atomic_write_text

__all__ = ["main", "EvalOptions", "run_eval", "build_parser"]

FRAME_CONVENTION = (
    "frames 0..context-1 are the given context; horizon h = predicted frames context..context+h-1 "
    "(with one context frame: frames 1..h); 'aggregate' holds the mean over those frames, 'aggregate_at' "
    "the value at frame context+h-1; sequences are averaged with equal weight"
)


@dataclass
class EvalOptions:
    """Validated `actwm eval` settings (see `build_parser` for the meaning of each)."""

    gt: Path
    pred: Path
    metrics: list[str]
    horizons: list[int]
    json_out: Path
    csv_out: Path | None = None
    plot_out: Path | None = None
    prompts: Path | None = None
    structures: str = "auto"
    tracker: str = "classical"
    trim: str = "auto"
    context: int = 1
    resize: int | None = None
    sam2_model: str = "facebook/sam2.1-hiera-tiny"
    sam2_config: str | None = None
    sam2_image_size: int | None = None
    device: str = "cpu"
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_objects: int = 8
    min_area: int = 16
    progress: bool = True

    def __post_init__(self) -> None:
        from actwm.eval.metrics import available_metrics

        known = ["scs", *available_metrics()]
        if not self.metrics:
            raise ValueError("--metrics: give at least one metric")
        bad = [m for m in self.metrics if m not in known]
        if bad:
            raise ValueError(f"--metrics: unknown metric(s) {bad}; available: {', '.join(known)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"--metrics: duplicate names in {self.metrics}")
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ValueError(f"--horizons: need positive integers, got {self.horizons}")
        self.horizons = sorted(set(self.horizons))
        if self.context < 1:
            raise ValueError(f"--context must be >= 1, got {self.context}")
        if self.structures not in ("prompts", "segmentation", "auto"):
            raise ValueError(f"--structures must be prompts, segmentation or auto, got {self.structures!r}")
        if self.structures == "prompts" and self.prompts is None and "scs" in self.metrics:
            raise ValueError("--structures prompts needs --prompts FILE")
        if self.tracker not in ("classical", "sam2"):
            raise ValueError(f"--tracker must be classical or sam2, got {self.tracker!r}")
        if self.trim not in ("auto", "flow", "depth", "none"):
            raise ValueError(f"--trim must be auto, flow, depth or none, got {self.trim!r}")
        if self.resize is not None and self.resize < 8:
            raise ValueError(f"--resize must be >= 8 pixels, got {self.resize}")
        for name in self.metric_options:
            if name not in self.metrics or name == "scs":
                raise ValueError(f"--metric-option {name}.*: {name!r} is not one of the requested --metrics")


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
    p = argparse.ArgumentParser(
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
        "--metrics", default="scs,psnr,ssim", help="comma list: scs,psnr,ssim,lpips,dreamsim,fvd,fid,controllability"
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
    p.add_argument(
        "--metric-option",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="option passed to get_metric, e.g. lpips.weights=/path/alexnet.pth (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> EvalOptions:
    structures = args.structures or ("prompts" if args.prompts else "auto")
    return EvalOptions(
        gt=args.gt,
        pred=args.pred,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        horizons=_parse_ints(args.horizons, "--horizons"),
        json_out=args.json_out,
        csv_out=args.csv_out,
        plot_out=args.plot_out,
        prompts=args.prompts,
        structures=structures,
        tracker=args.tracker,
        trim=args.trim,
        context=args.context,
        resize=args.resize,
        sam2_model=args.sam2_model,
        sam2_config=args.sam2_config,
        sam2_image_size=args.sam2_image_size,
        device=args.device,
        metric_options=_parse_metric_options(args.metric_option),
        max_objects=args.max_objects,
        min_area=args.min_area,
        progress=not args.no_progress,
    )


# --------------------------------------------------------------------------------------------------


def _to_tensor(frames: np.ndarray):
    """`(T, H, W, 3)` uint8 -> `(T, 3, H, W)` float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


class _Evaluator:
    def __init__(self, opts: EvalOptions) -> None:
        from actwm.eval.metrics import get_metric

        self.opts = opts
        self.metrics = {}
        for name in opts.metrics:
            if name == "scs":
                continue
            options: dict[str, Any] = {}
            if opts.resize and name not in ("fvd", "fid"):  # set metrics keep their network's input size
                options["resize"] = opts.resize
            options.update(opts.metric_options.get(name, {}))
            self.metrics[name] = get_metric(name, **options)
        self.tracker = None
        self.prompts = None
        if "scs" in opts.metrics:
            from actwm.eval.trackers import get_tracker

            if opts.tracker == "sam2":
                self.tracker = get_tracker(
                    "sam2",
                    model=opts.sam2_model,
                    config=opts.sam2_config,
                    device=opts.device,
                    image_size=opts.sam2_image_size,
                )
            else:
                self.tracker = get_tracker("classical")
            if opts.structures == "prompts":
                from actwm.eval.prompts import load_prompts

                self.prompts = load_prompts(opts.prompts)

    # ---- SCS -------------------------------------------------------------------------------------

    def _structures(self, pair) -> tuple[np.ndarray, list[Any]]:
        from actwm.eval import prompts as P

        anchor = self.opts.context - 1
        frame = pair.gt[anchor]
        if self.opts.structures == "prompts":
            assert self.prompts is not None
            if pair.name not in self.prompts:
                raise ValueError(f"sequence {pair.name!r}: no entry in the prompts file {self.opts.prompts}")
            masks = P.masks_from_prompts(frame, self.prompts[pair.name], seq=pair.name, segmenter=self.tracker)
            return masks, list(range(len(masks)))
        if self.opts.structures == "segmentation":
            if "segmentation" not in pair.extras:
                raise ValueError(
                    f"sequence {pair.name!r}: --structures segmentation needs "
                    f"{side_file_hint(pair.gt_path, 'segmentation')}"
                )
            static = pair.meta.get("static_ids")
            masks, ids = P.structures_from_segmentation(
                pair.extras["segmentation"][anchor],
                static_ids=static,
                min_area=self.opts.min_area,
                max_objects=self.opts.max_objects,
            )
            if len(masks) == 0:
                raise ValueError(
                    f"sequence {pair.name!r}: no segmented structure of >= {self.opts.min_area} px on frame {anchor}"
                )
            return masks, ids
        masks = P.structures_auto(frame, min_area=self.opts.min_area, max_objects=self.opts.max_objects)
        if len(masks) == 0:
            raise ValueError(
                f"sequence {pair.name!r}: automatic selection found no structure of >= {self.opts.min_area} px"
            )
        return masks, list(range(len(masks)))

    def _trim(self, pair):
        from actwm.eval.trim import TrimResult, depth_trim_point, flow_trim_point

        anchor = self.opts.context - 1
        geometry = all(k in pair.extras for k in ("depth", "intrinsics", "extrinsics"))
        method = self.opts.trim
        if method == "auto":
            method = "depth" if geometry else "flow"
        if method == "none":
            return TrimResult(len(pair.gt), np.zeros(0, np.int64), "none")
        if method == "depth":
            if not geometry:
                raise ValueError(
                    f"sequence {pair.name!r}: --trim depth needs depth, intrinsics and extrinsics side files "
                    f"(e.g. {side_file_hint(pair.gt_path, 'depth')})"
                )
            ex = pair.extras
            # with a segmentation, background pixels (id < 0: sky, nothing hit) are not scene points
            valid0 = ex["segmentation"][anchor] >= 0 if "segmentation" in ex else None
            r = depth_trim_point(
                ex["depth"][anchor:], ex["intrinsics"][anchor:], ex["extrinsics"][anchor:], valid0=valid0
            )
        else:
            r = flow_trim_point(pair.gt[anchor:])
        return TrimResult(r.trim + anchor, r.visible, r.method)

    def _scs(self, pair) -> tuple[dict, dict, dict]:
        from actwm.eval.scs import structural_consistency

        masks0, ids = self._structures(pair)
        trim = self._trim(pair)
        res = structural_consistency(
            pair.gt, pair.pred, masks0, self.tracker, context=self.opts.context, trim=trim.trim
        )
        mean, at = res.by_horizon(self.opts.horizons)
        info = {
            "tracker": res.tracker,
            "structures": self.opts.structures,
            "num_objects": res.num_objects,
            "object_ids": [int(i) for i in ids],
            "object_areas": [int(m.sum()) for m in masks0],
            "trim": trim.trim,
            "trim_method": trim.method,
            "per_frame": [None if np.isnan(row).all() else round(float(row.mean()) * 100, 4) for row in res.iou],
        }
        return mean, at, info

    # ---- one sequence ----------------------------------------------------------------------------

    def sequence(self, pair) -> tuple[dict, dict[str, Any]]:
        from actwm.eval.scs import scores_by_horizon

        c = self.opts.context
        need = c + max(self.opts.horizons)
        if len(pair.gt) < need:
            raise ValueError(
                f"sequence {pair.name!r}: has {len(pair.gt)} frames but horizon {max(self.opts.horizons)} with "
                f"{c} context frame(s) needs {need}"
            )
        out: dict[str, Any] = {"num_frames": int(len(pair.gt)), "pred_included_context": pair.pred_included_context}
        at_out: dict[str, Any] = {}
        sets: dict[str, Any] = {}
        gt_t = pred_t = None
        for name in self.opts.metrics:
            if name == "scs":
                mean, at, info = self._scs(pair)
                out["scs"], at_out["scs"], out["scs_info"] = mean, at, info
                continue
            metric = self.metrics[name]
            if gt_t is None:
                gt_t, pred_t = _to_tensor(pair.gt[:need]), _to_tensor(pair.pred[:need])
            if metric.kind == "set":
                sets[name] = (gt_t, pred_t)
                continue
            try:
                vals = metric(gt_t[c:], pred_t[c:]).detach().cpu().double().numpy()
            except ValueError as exc:
                raise ValueError(f"sequence {pair.name!r}: {name}: {exc}") from exc
            per_frame = np.concatenate([np.full(c, np.nan), vals])
            out[name], at_out[name] = scores_by_horizon(
                per_frame, context=c, trim=len(per_frame), horizons=self.opts.horizons
            )
        out["at"] = at_out
        return out, sets


def run_eval(opts: EvalOptions) -> dict[str, Any]:
    """Compute all results (nothing is written); returns the JSON-ready dict."""
    from tqdm import tqdm

    from actwm.eval.sequences import load_pair, match_sequences

    ev = _Evaluator(opts)
    pairs, unmatched = match_sequences(opts.gt, opts.pred)
    if ev.prompts is not None:
        unknown = sorted(set(ev.prompts) - {n for n, _, _ in pairs})
        if unknown:
            print(f"actwm eval: prompts given for unknown sequence(s) {unknown} (ignored)", file=sys.stderr)
    if unmatched:
        print(f"actwm eval: predictions without ground truth ignored: {unmatched}", file=sys.stderr)
    sequences: dict[str, Any] = {}
    set_videos: dict[str, tuple[list, list]] = {}
    for name, gt_path, pred_path in tqdm(
        pairs, desc="actwm eval", unit="seq", disable=not opts.progress, file=sys.stderr
    ):
        pair = load_pair(name, gt_path, pred_path, context=opts.context)
        sequences[name], sets = ev.sequence(pair)
        for metric, (g, p) in sets.items():
            set_videos.setdefault(metric, ([], []))
            set_videos[metric][0].append(g)
            set_videos[metric][1].append(p)
    aggregate: dict[str, dict[str, float | None]] = {}
    aggregate_at: dict[str, dict[str, float | None]] = {}
    notes: list[str] = []
    c = opts.context
    for name in opts.metrics:
        hs = [str(h) for h in opts.horizons]
        if name in ev.metrics and ev.metrics[name].kind == "set":
            gts, preds = set_videos[name]
            aggregate[name] = {}
            for h in opts.horizons:
                try:
                    aggregate[name][str(h)] = float(
                        ev.metrics[name]([g[c : c + h] for g in gts], [p[c : c + h] for p in preds])
                    )
                except ValueError as exc:
                    aggregate[name][str(h)] = None
                    notes.append(f"{name} at horizon {h}: not computed ({exc})")
            continue
        aggregate[name] = {h: _mean([sequences[s][name][h] for s in sequences]) for h in hs}
        aggregate_at[name] = {h: _mean([sequences[s]["at"][name][h] for s in sequences]) for h in hs}
    for note in notes:
        print(f"actwm eval: {note}", file=sys.stderr)
    tracker_name = ev.tracker.name if ev.tracker is not None else None
    meta = {
        "tracker": tracker_name,
        "metrics": opts.metrics,
        "num_sequences": len(sequences),
        "resize": opts.resize,
        "context": opts.context,
        "horizons": opts.horizons,
        "structures": opts.structures if "scs" in opts.metrics else None,
        "trim": opts.trim if "scs" in opts.metrics else None,
        "higher_is_better": {n: (True if n == "scs" else bool(ev.metrics[n].higher_is_better)) for n in opts.metrics},
        "kinds": {n: ("scs" if n == "scs" else ev.metrics[n].kind) for n in opts.metrics},
        "scales": {"scs": "0-100 (mean mask IoU x 100)"} if "scs" in opts.metrics else {},
        "frame_convention": FRAME_CONVENTION,
        "gt": str(opts.gt),
        "pred": str(opts.pred),
        "unmatched_predictions": unmatched,
        "notes": notes,
    }
    return {"aggregate": aggregate, "aggregate_at": aggregate_at, "sequences": sequences, "meta": meta}


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


def write_results(results: dict[str, Any], opts: EvalOptions) -> None:
    """Write plot, CSV and JSON (JSON last), each atomically."""
    if opts.plot_out is not None:
        from actwm.eval.plots import plot_horizons

        plot_horizons(
            results["aggregate"],
            opts.plot_out,
            at=results["aggregate_at"],
            higher_is_better=results["meta"]["higher_is_better"],
            title=f"{results['meta']['num_sequences']} sequences"
            + (f", SCS tracker {results['meta']['tracker']}" if results["meta"]["tracker"] else ""),
        )
    if opts.csv_out is not None:
        atomic_write_text(opts.csv_out, results_csv(results))
    atomic_write_json(opts.json_out, results)


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
    try:
        opts = options_from_args(args)
        results = run_eval(opts)
        write_results(results, opts)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"actwm eval: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(results))
    print(
        f"wrote {opts.json_out}"
        + (f", {opts.csv_out}" if opts.csv_out else "")
        + (f", {opts.plot_out}" if opts.plot_out else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
