"""The evaluation engine: `evaluate(gt, pred, ...)` scores predicted videos against ground truth.

One code path for every caller: `actwm eval` (folders), the demo and planning (tensors in memory). A
folder is read into the same in-memory `SequencePair`s (`actwm.eval.sequences`) that arrays and tensors
become (`actwm.eval.inputs`), and both are scored by the same `Scorer`; nothing is written.

Frame convention (`FRAME_CONVENTION`): frames `0 .. context-1` are the given context; horizon h covers the
predicted frames `context .. context+h-1` (with one context frame: frames 1..h). Per metric and horizon the
result holds the mean over those frames ("aggregate") and the value at the last of them ("aggregate_at");
sequences are averaged with equal weight. Set metrics (FVD, FID) are computed over all sequences at once.

Result layout (what `actwm eval --json` writes)::

    {"aggregate": {metric: {str(h): value | None}}, "aggregate_at": {...},
     "sequences": {name: {metric: {str(h): value}, "at": {...}, "num_frames": T, ...}}, "meta": {...}}
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from actwm.checks import require_at_least, require_choice
from actwm.eval.inputs import in_memory_pairs
from actwm.eval.metrics import available_metrics, get_metric
from actwm.eval.prompts import load_prompts, parse_prompts
from actwm.eval.scs import scores_by_horizon
from actwm.eval.scs_sequence import SCSScorer
from actwm.eval.sequences import SequencePair, load_pair, match_sequences
from actwm.pixels import uint8_to_unit

__all__ = ["EvalConfig", "evaluate", "Scorer", "FRAME_CONVENTION"]

FRAME_CONVENTION = (
    "frames 0..context-1 are the given context; horizon h = predicted frames context..context+h-1 "
    "(with one context frame: frames 1..h); 'aggregate' holds the mean over those frames, 'aggregate_at' "
    "the value at frame context+h-1; sequences are averaged with equal weight"
)


@dataclass
class EvalConfig:
    """What to compute (no output paths). Field meanings as the `actwm eval` options of the same name.

    `prompts`: a prompts JSON file or the parsed `{sequence: [{"box": ...}, ...]}` dict.
    `metric_options`: `{metric: {option: value}}` passed to `get_metric`.
    """

    metrics: list[str] = field(default_factory=lambda: ["scs", "psnr", "ssim"])
    horizons: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    structures: str = "auto"
    prompts: Path | dict | None = None
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
        known = ["scs", *available_metrics()]
        self.metrics = list(self.metrics)
        if not self.metrics:
            raise ValueError("--metrics: give at least one metric")
        bad = [m for m in self.metrics if m not in known]
        if bad:
            raise ValueError(f"--metrics: unknown metric(s) {bad}; available: {', '.join(known)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"--metrics: duplicate names in {self.metrics}")
        if not self.horizons or any(not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"--horizons: need positive integers, got {self.horizons}")
        self.horizons = sorted(set(self.horizons))
        require_at_least(self, 1, "context", "max_objects", "min_area")
        require_choice(self, "structures", ("prompts", "segmentation", "auto"))
        if self.structures == "prompts" and self.prompts is None and "scs" in self.metrics:
            raise ValueError("--structures prompts needs --prompts FILE")
        require_choice(self, "tracker", ("classical", "sam2"))
        require_choice(self, "trim", ("auto", "flow", "depth", "none"))
        require_at_least(self, 8, "resize", optional=True)  # pixels
        for name in self.metric_options:
            if name not in self.metrics or name == "scs":
                raise ValueError(f"--metric-option {name}.*: {name!r} is not one of the requested --metrics")


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


class Scorer:
    """Builds the metrics and the SCS tracker once; scores `SequencePair`s one at a time."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.metrics = {}
        for name in cfg.metrics:
            if name == "scs":
                continue
            options: dict[str, Any] = {}
            if cfg.resize and name not in ("fvd", "fid"):  # set metrics keep their network's input size
                options["resize"] = cfg.resize
            options.update(cfg.metric_options.get(name, {}))
            self.metrics[name] = get_metric(name, **options)
        self.prompts = None
        if "scs" in cfg.metrics and cfg.structures == "prompts":
            p = cfg.prompts
            self.prompts = parse_prompts(p, "prompts") if isinstance(p, dict) else load_prompts(p)
        self.scs = SCSScorer(cfg, self.prompts) if "scs" in cfg.metrics else None

    def sequence(self, pair: SequencePair) -> tuple[dict[str, Any], dict[str, Any]]:
        """One sequence -> (its JSON entry, {set metric: (gt, pred) frames `(T, 3, H, W)` in [0, 1]})."""
        c, horizons = self.cfg.context, self.cfg.horizons
        need = c + max(horizons)
        if len(pair.gt) < need:
            raise ValueError(
                f"sequence {pair.name!r}: has {len(pair.gt)} frames but horizon {max(horizons)} with "
                f"{c} context frame(s) needs {need}"
            )
        out: dict[str, Any] = {"num_frames": int(len(pair.gt)), "pred_included_context": pair.pred_included_context}
        at_out: dict[str, Any] = {}
        sets: dict[str, Any] = {}
        gt_t = pred_t = None
        for name in self.cfg.metrics:
            if name == "scs":
                out["scs"], at_out["scs"], out["scs_info"] = self.scs(pair)
                continue
            metric = self.metrics[name]
            if metric.kind == "sequence":  # traj, depth: scored from the pair itself (frames and side data)
                out[name], at_out[name], out[f"{name}_info"] = metric.score_pair(pair, c, horizons)
                continue
            if gt_t is None:
                gt_t, pred_t = uint8_to_unit(pair.gt[:need]), uint8_to_unit(pair.pred[:need])
            if metric.kind == "set":
                sets[name] = (gt_t, pred_t)
                continue
            try:
                vals = metric(gt_t[c:], pred_t[c:]).detach().cpu().double().numpy()
            except ValueError as exc:
                raise ValueError(f"sequence {pair.name!r}: {name}: {exc}") from exc
            per_frame = np.concatenate([np.full(c, np.nan), vals])  # context frames are not scored
            out[name], at_out[name] = scores_by_horizon(per_frame, context=c, trim=len(per_frame), horizons=horizons)
        out["at"] = at_out
        return out, sets

    def aggregate(
        self, sequences: dict[str, Any], set_videos: dict[str, tuple[list, list]]
    ) -> tuple[dict, dict, list[str]]:
        """Means over sequences (frame metrics, SCS) and set metrics over all sequences, per horizon."""
        aggregate: dict[str, dict[str, float | None]] = {}
        aggregate_at: dict[str, dict[str, float | None]] = {}
        notes: list[str] = []
        c = self.cfg.context
        for name in self.cfg.metrics:
            hs = [str(h) for h in self.cfg.horizons]
            if name in self.metrics and self.metrics[name].kind == "set":
                gts, preds = set_videos[name]
                aggregate[name] = {}
                for h in self.cfg.horizons:
                    try:
                        value = self.metrics[name]([g[c : c + h] for g in gts], [p[c : c + h] for p in preds])
                        aggregate[name][str(h)] = float(value)
                    except ValueError as exc:
                        aggregate[name][str(h)] = None
                        notes.append(f"{name} at horizon {h}: not computed ({exc})")
                continue
            aggregate[name] = {h: _mean([sequences[s][name][h] for s in sequences]) for h in hs}
            aggregate_at[name] = {h: _mean([sequences[s]["at"][name][h] for s in sequences]) for h in hs}
        return aggregate, aggregate_at, notes

    def meta(self, num_sequences: int) -> dict[str, Any]:
        cfg, scs = self.cfg, "scs" in self.cfg.metrics
        return {
            "tracker": self.scs.tracker.name if self.scs is not None else None,
            "metrics": cfg.metrics,
            "num_sequences": num_sequences,
            "resize": cfg.resize,
            "context": cfg.context,
            "horizons": cfg.horizons,
            "structures": cfg.structures if scs else None,
            "trim": cfg.trim if scs else None,
            "higher_is_better": {
                n: (True if n == "scs" else bool(self.metrics[n].higher_is_better)) for n in cfg.metrics
            },
            "kinds": {n: ("scs" if n == "scs" else self.metrics[n].kind) for n in cfg.metrics},
            "scales": {"scs": "0-100 (mean mask IoU x 100)"} if scs else {},
            "frame_convention": FRAME_CONVENTION,
        }

    def run(self, pairs: Iterable[SequencePair], total: int) -> tuple[dict[str, Any], dict, dict, list[str]]:
        """Score every pair (with a progress bar); returns (sequences, aggregate, aggregate_at, notes)."""
        sequences: dict[str, Any] = {}
        set_videos: dict[str, tuple[list, list]] = {}
        bar = tqdm(pairs, total=total, desc="actwm eval", unit="seq", disable=not self.cfg.progress, file=sys.stderr)
        for pair in bar:
            sequences[pair.name], sets = self.sequence(pair)
            for metric, (g, p) in sets.items():
                set_videos.setdefault(metric, ([], []))
                set_videos[metric][0].append(g)
                set_videos[metric][1].append(p)
        aggregate, aggregate_at, notes = self.aggregate(sequences, set_videos)
        return sequences, aggregate, aggregate_at, notes


def _folder_pairs(gt: Path, pred: Path, context: int) -> tuple[list[str], Iterator[SequencePair], list[str]]:
    """(names, lazily loaded pairs, unmatched prediction names) of two sequence folders."""
    matched, unmatched = match_sequences(gt, pred)
    pairs = (load_pair(name, g, p, context=context) for name, g, p in matched)
    return [name for name, _, _ in matched], pairs, unmatched


def _config(config: EvalConfig | None, options: dict[str, Any]) -> EvalConfig:
    cfg = config or EvalConfig()
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"evaluate: unknown option(s) {unknown}; accepted: {sorted(names)}")
    return dataclasses.replace(cfg, **options) if options else cfg


def evaluate(
    gt: Any,
    pred: Any,
    config: EvalConfig | None = None,
    *,
    names: list[str] | None = None,
    segmentation: Any = None,
    depth: Any = None,
    intrinsics: Any = None,
    extrinsics: Any = None,
    static_ids: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Score `pred` against `gt`; returns the result dict that `actwm eval --json` writes (nothing is written).

    Args:
        gt, pred: two sequence folders (paths; side data then comes from the folders' side files), or
            in-memory videos in any layout of `actwm.eval.inputs` (one video, a batch `(S, T, ...)`, a list,
            a dict by name). A prediction holds all T frames or only the `T - context` predicted ones.
        config: an `EvalConfig`; keyword `options` (e.g. `metrics=["psnr"]`, `horizons=[2, 4]`) override it.
        names: sequence names for list / batch inputs (default `seq000`, `seq001`, ...).
        segmentation, depth, intrinsics, extrinsics, static_ids: optional side data for SCS (in memory).
    Raises:
        ValueError / FileNotFoundError naming the option, sequence or file at fault.
    """
    cfg = _config(config, options)
    side = {"segmentation": segmentation, "depth": depth, "intrinsics": intrinsics, "extrinsics": extrinsics}
    folders = isinstance(gt, (str, Path)), isinstance(pred, (str, Path))
    if folders[0] != folders[1]:
        raise ValueError("evaluate: gt and pred must both be folders or both be in-memory videos")
    if folders[0]:
        if names is not None or static_ids is not None or any(v is not None for v in side.values()):
            raise ValueError("evaluate: with folders, names and side data come from the folders (side files)")
        order, pairs, unmatched = _folder_pairs(Path(gt), Path(pred), cfg.context)
        source = {"gt": str(gt), "pred": str(pred)}
    else:
        pairs = in_memory_pairs(gt, pred, context=cfg.context, names=names, static_ids=static_ids, **side)
        order, unmatched = [p.name for p in pairs], []
        source = {"gt": "in-memory", "pred": "in-memory"}
    scorer = Scorer(cfg)
    notes = []
    if scorer.prompts is not None:
        unknown = sorted(set(scorer.prompts) - set(order))
        if unknown:
            notes.append(f"prompts given for unknown sequence(s) {unknown} (ignored)")
    if unmatched:
        notes.append(f"predictions without ground truth ignored: {unmatched}")
    sequences, aggregate, aggregate_at, set_notes = scorer.run(pairs, len(order))
    meta = {**scorer.meta(len(sequences)), **source, "unmatched_predictions": unmatched, "notes": notes + set_notes}
    return {"aggregate": aggregate, "aggregate_at": aggregate_at, "sequences": sequences, "meta": meta}
