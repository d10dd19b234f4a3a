"""Policy-evaluation agreement between a world model and the real world (survey section 3.3 / 4).

When a world model is used to evaluate robot policies, each policy i gets a success rate predicted by
rolling it out in the model, `pred[i]`, and one measured for real, `real[i]`. Two numbers say how much the
model's verdicts can be trusted (as in SIMPLER, Li et al. 2024, and the video-model policy evaluators the
survey reviews):

* Pearson correlation `r` between `pred` and `real`: linear agreement of the success rates (1 is best).
* Mean Maximum Rank Violation (MMRV): for each policy i, the worst ranking mistake it is involved in,
  weighted by how much the real success rates differ; averaged over policies (0 is best)::

      RV(i, j)  = |real[i] - real[j]| * 1[(pred[i] > pred[j]) != (real[i] > real[j])]
      MMRV      = (1 / N) * sum_i max_j RV(i, j)

  The comparisons are strict, exactly as SIMPLER's reference implementation: a pair tied in one list but
  ordered in the other counts as a violation (for the member of the pair that is ahead in the other
  list). MMRV is in the units of the success rates (0..1 for rates).

`actwm policy-eval --pred 0.1,0.5,0.9 --real 0.2,0.4,0.8 [--json OUT]` or `--csv FILE` (columns `pred` and
`real`, optional `policy`) prints both and optionally writes them as JSON.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from actwm.errors import ArgumentParser
from actwm.eval.outputs import check_outputs
from actwm.io import atomic_write_json

__all__ = ["pearson", "mmrv", "rank_violations", "check_rates", "main"]


def check_rates(values: Sequence[float], what: str) -> None:
    """Raise ValueError naming `what` and the value when a success rate is NaN or outside [0, 1]."""
    for i, v in enumerate(values):
        if not (0.0 <= float(v) <= 1.0):  # also false for NaN
            raise ValueError(f"{what}: success rate #{i + 1} is {float(v)!r}; success rates must be in [0, 1]")


def _pair(pred_success: Sequence[float], real_success: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred_success, dtype=np.float64)
    real = np.asarray(real_success, dtype=np.float64)
    if pred.ndim != 1 or real.ndim != 1:
        raise ValueError(f"success rates must be 1-D lists, got shapes {pred.shape} and {real.shape}")
    if len(pred) != len(real):
        raise ValueError(f"pred and real must list the same policies: {len(pred)} vs {len(real)} values")
    if len(pred) < 2:
        raise ValueError(f"need at least 2 policies to compare, got {len(pred)}")
    if not (np.isfinite(pred).all() and np.isfinite(real).all()):
        raise ValueError(f"success rates must be finite numbers, got pred {pred.tolist()} and real {real.tolist()}")
    return pred, real


def pearson(pred_success: Sequence[float], real_success: Sequence[float]) -> float:
    """Pearson correlation coefficient between predicted and real success rates.

    Args:
        pred_success: `(N,)` success rate of each policy inside the world model.
        real_success: `(N,)` real success rate of the same policies, same order.
    Returns:
        r in [-1, 1].
    Raises:
        ValueError: on fewer than 2 policies, mismatched lengths, or a constant list (r undefined).
    """
    pred, real = _pair(pred_success, real_success)
    dp, dr = pred - pred.mean(), real - real.mean()
    denom = math.sqrt(float((dp**2).sum()) * float((dr**2).sum()))
    if denom == 0.0:
        which = "pred" if float((dp**2).sum()) == 0.0 else "real"
        raise ValueError(f"Pearson correlation is undefined: all {which} success rates are equal")
    return float(np.clip((dp * dr).sum() / denom, -1.0, 1.0))


def rank_violations(pred_success: Sequence[float], real_success: Sequence[float]) -> np.ndarray:
    """`(N, N)` matrix RV[i, j] = |real_i - real_j| if the strict orders of (i, j) disagree, else 0."""
    pred, real = _pair(pred_success, real_success)
    pred_gt = pred[:, None] > pred[None, :]
    real_gt = real[:, None] > real[None, :]
    return np.where(pred_gt != real_gt, np.abs(real[:, None] - real[None, :]), 0.0)


def mmrv(pred_success: Sequence[float], real_success: Sequence[float]) -> float:
    """Mean Maximum Rank Violation (lower is better; 0 = the model ranks every pair like reality).

    Args:
        pred_success: `(N,)` success rate of each policy inside the world model.
        real_success: `(N,)` real success rate of the same policies, same order.
    Returns:
        `mean_i max_j RV(i, j)` with `RV(i, j) = |real_i - real_j|` when `(pred_i > pred_j) != (real_i > real_j)`.
    """
    return float(rank_violations(pred_success, real_success).max(axis=1).mean())


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{flag}: expected comma-separated numbers, got {text!r}") from exc


def _read_csv(path: Path) -> tuple[list[str], list[float], list[float]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        pred_col = "pred" if "pred" in fields else ("sim" if "sim" in fields else None)
        if pred_col is None or "real" not in fields:
            raise ValueError(f"{path}: needs columns 'pred' (or 'sim') and 'real', found {fields}")
        names, pred, real = [], [], []
        for i, row in enumerate(reader, start=2):
            try:
                pred.append(float(row[pred_col]))
                real.append(float(row["real"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}, line {i}: pred/real must be numbers, got {row}") from exc
            names.append(row.get("policy") or f"policy_{len(names)}")
    check_rates(pred, f"{path}, column {pred_col}")
    check_rates(real, f"{path}, column real")
    return names, pred, real


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="actwm policy-eval",
        description="Agreement between world-model and real policy success rates: Pearson r (higher is better) "
        "and MMRV, the mean maximum rank violation of SIMPLER (lower is better).",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", help="comma-separated success rates predicted in the world model")
    src.add_argument("--csv", type=Path, help="CSV with columns pred (or sim), real and optional policy")
    parser.add_argument("--real", help="comma-separated real success rates (with --pred), same policy order")
    parser.add_argument("--json", type=Path, dest="json_out", help="write {pearson, mmrv, ...} here")
    args = parser.parse_args(argv)
    if args.json_out is not None:
        check_outputs({"--json": args.json_out})
    if args.csv is not None:
        if args.real is not None:
            raise ValueError("--real goes with --pred, not with --csv")
        names, pred, real = _read_csv(args.csv)
    else:
        if args.real is None:
            raise ValueError("--pred needs --real")
        pred, real = _floats(args.pred, "--pred"), _floats(args.real, "--real")
        check_rates(pred, "--pred")
        check_rates(real, "--real")
        names = [f"policy_{i}" for i in range(len(pred))]
    result = {
        "pearson": pearson(pred, real),
        "mmrv": mmrv(pred, real),
        "num_policies": len(pred),
        "policies": names,
        "pred": pred,
        "real": real,
    }
    print(f"policies: {len(pred)}")
    print(f"pearson r: {result['pearson']:.4f}  (higher is better)")
    print(f"MMRV:      {result['mmrv']:.4f}  (lower is better)")
    if args.json_out is not None:
        atomic_write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
