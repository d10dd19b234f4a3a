"""World-In-World's flagship finding in miniature: closed-loop SR against controllability and visual quality.

For every world model a demo output directory holds (passive-only, action-trained with guidance, the same
without guidance, from scratch if present) plus the oracle, on the demo's closed-loop ImageNav settings:

- SR (and SPL) of the planning agent with that world model (same base-policy proposals, scorer, stop rule);
- controllability: SSIM between the imagined and the executed (simulator) future of the SAME plan, mean
  over plans, frames and episodes. World-In-World uses 1 - LPIPS; LPIPS's official weights are not on this
  machine (`actwm.eval.lpips` refuses without them), and at 32 px SSIM is the closest honest proxy: it is
  recorded as the metric's name, and 1 - LPIPS is used instead when the weights are found;
- visual quality (action-agnostic): for each imagined frame, the best SSIM against the executed futures of
  ALL M plans at that decision and step: a sharp, plausible view of the room scores high even when it
  shows another plan's outcome (the passive model's case);
- least-squares fits SR = a * x + b with Pearson r, for x = controllability and x = quality.

    python benchmarks/controllability_study.py --demo /tmp/demo_full --json study.json [--episodes 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actwm import __version__
from actwm.demo.config import DemoConfig
from actwm.demo.planning_stage import (
    calibrated_stop,
    imagenav_task,
    make_world,
    paired_futures,
    run_agent,
)
from actwm.eval.lpips import LPIPS
from actwm.eval.pixel import ssim_frames
from actwm.io import atomic_write_json, read_json
from actwm.planning.worlds import checkpoint_sha256


def load_demo_config(demo: Path) -> DemoConfig:
    """The demo's settings from `DIR/demo_config.json` (nested, or flat from before the nesting; unknown keys
    refused)."""
    path = demo / "demo_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--demo {demo}: no demo_config.json (not an `actwm demo` output directory)")
    try:
        return DemoConfig.from_dict(read_json(path))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def world_models(demo: Path, guidance: float) -> dict[str, tuple[str, Path | None, float]]:
    """`{name: (kind, checkpoint or None, guidance)}` for every model the demo directory holds, plus the oracle."""
    runs = demo / "runs"
    models: dict[str, tuple[str, Path | None, float]] = {}
    for name, run, g in (
        ("passive-only", "passive", 1.0),
        ("action, guidance", "action", guidance),
        ("action, no guidance", "action", 1.0),
        ("scratch, guidance", "scratch", guidance),
    ):
        final = runs / run / "final"
        if (final / "model.safetensors").is_file():
            models[name] = ("checkpoint", final, g)
    if "action, guidance" not in models:
        raise FileNotFoundError(f"--demo {demo}: no finished action model at {runs / 'action' / 'final'}")
    models["oracle"] = ("oracle", None, 1.0)
    return models


def similarity_fn() -> tuple[str, Any]:
    """1 - LPIPS(alex) with the official weights if present, else SSIM: (name, f(a, b) -> (n,) similarities)."""
    try:
        net = LPIPS.from_pretrained("alex").eval()
    except (FileNotFoundError, ValueError):
        return "ssim", lambda a, b: ssim_frames(a, b).double()

    def lpips_sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return 1.0 - net(a, b).reshape(-1).double()

    return "1-lpips(alex)", lpips_sim


def measure(imag: np.ndarray, real: np.ndarray, sim: Any) -> tuple[float, float]:
    """(controllability, quality) of imagined `(E, M, L, 3, H, W)` against real futures of the same plans."""
    e, m, steps = imag.shape[:3]
    a = torch.from_numpy(imag).float()
    b = torch.from_numpy(real).float()
    same = sim(b.reshape(-1, *b.shape[-3:]), a.reshape(-1, *a.shape[-3:])).reshape(e, m, steps)
    cross = torch.stack(
        [
            sim(b[:, j].reshape(-1, *b.shape[-3:]), a[:, i].reshape(-1, *a.shape[-3:])).reshape(e, steps)
            for i in range(m)
            for j in range(m)
        ]
    ).reshape(m, m, e, steps)
    best = cross.max(dim=1).values  # (M, E, L): the best-matching real future of any plan
    return float(same.mean()), float(best.mean())


def fit(x: list[float], y: list[float]) -> dict[str, float | None]:
    """Least squares y = slope * x + intercept and Pearson r (None where x or y is constant)."""
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return {"slope": None, "intercept": None, "r": None}
    slope, intercept = np.polyfit(xs, ys, 1)
    return {"slope": float(slope), "intercept": float(intercept), "r": float(np.corrcoef(xs, ys)[0, 1])}


def study(demo: Path, episodes: int | None, progress: bool = True) -> dict[str, Any]:
    # 1. the demo's closed-loop settings (one M: no sweep) and its stop calibration
    cfg = load_demo_config(demo)
    plan = cfg.plan
    base = cfg.updated({"plan": {"episodes": episodes or plan.episodes, "sweep": (plan.planner.proposals,)}})
    out = demo / "controllability"
    out.mkdir(parents=True, exist_ok=True)
    stop = calibrated_stop(base, out / "stop_calibration.json")
    name, sim = similarity_fn()
    rows: dict[str, Any] = {}
    # 2. per world model: closed-loop SR, then imagined vs executed futures of the same plans
    for label, (kind, ckpt, guidance) in world_models(demo, cfg.guidance.scale).items():
        s = base.updated({"guidance": {"scale": guidance}})
        slug = label.replace(", ", "_").replace(" ", "_")
        if progress:
            print(f"-- {label}", flush=True)
        res = run_agent("oracle" if kind == "oracle" else "model", s, stop, out / f"{slug}.json", ckpt)
        task = imagenav_task(s)
        try:
            eps = task.episodes(seed=s.seed, n=s.plan.episodes)
            world = make_world("oracle" if kind == "oracle" else "checkpoint", s, ckpt)
            imag, real, _ = paired_futures(task, world, eps, s.plan.planner.proposals, s.plan.planner.horizon, s.seed)
        finally:
            task.close()
        ctrl, quality = measure(imag, real, sim)
        sm = res["summary"]
        rows[label] = {
            "success_rate": sm["success_rate"],
            "success_rate_ci95": sm["success_rate_ci95"],
            "spl": sm["spl"],
            "n": sm["n"],
            "controllability": ctrl,
            "quality": quality,
            "guidance": guidance,
            "checkpoint": str(ckpt) if ckpt else None,
            "checkpoint_sha256": checkpoint_sha256(ckpt) if ckpt else None,
            "oracle": kind == "oracle",
        }
    # 3. the two fits across world models
    sr = [r["success_rate"] for r in rows.values()]
    learned = [r for r in rows.values() if not r["oracle"]]
    lsr = [r["success_rate"] for r in learned]
    return {
        "demo": str(demo),
        "models": rows,
        "fit_sr_vs_controllability": fit([r["controllability"] for r in rows.values()], sr),
        "fit_sr_vs_quality": fit([r["quality"] for r in rows.values()], sr),
        # the oracle (1, 1) dominates both fits; the same fits over the learned models alone
        "fit_learned_sr_vs_controllability": fit([r["controllability"] for r in learned], lsr),
        "fit_learned_sr_vs_quality": fit([r["quality"] for r in learned], lsr),
        "controllability_definition": f"mean {name} between imagined and executed futures of the same plan "
        "(M base-policy plans of L actions from each episode's start; every agent-action frame)",
        "quality_definition": f"mean over imagined frames of the best {name} against the executed futures of any "
        "of the M plans at the same step (action-agnostic)",
        "similarity": name,
        "lpips_note": None if name != "ssim" else "LPIPS official weights not found; SSIM used as the proxy",
        "episode_set": res["fingerprint"]["episode_set"],
        "settings": base.to_dict(),
        "stop_calibration": stop,
        "actwm_version": __version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", required=True, help="an `actwm demo` output directory")
    p.add_argument("--json", required=True, help="output JSON")
    p.add_argument("--episodes", type=int, default=None, help="ImageNav episodes (default: the demo's plan.episodes)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = study(Path(args.demo), args.episodes)
    atomic_write_json(args.json, result)
    for label, r in result["models"].items():
        print(
            f"{label:>20}: SR {r['success_rate']:.3f}  controllability {r['controllability']:.3f}  "
            f"quality {r['quality']:.3f}"
        )
    for key in [k for k in result if k.startswith("fit_")]:
        print(key, result[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
