"""Cost of action injection per backbone.

- param_ratio: action-encoder parameters / backbone parameters at the REAL sizes (built on the meta device,
  no weights needed).
- latency_ratio: wrapped forward / bare forward at the tiny size, interleaved repeats in one run (median).
- identical_at_init: the wrapped model's output equals the bare backbone's bit for bit at initialisation.

    python benchmarks/injection_overhead.py --json injection.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from actwm.io import atomic_write_json
from actwm.models.world_model import TINY_PRESETS, WorldModel, get_preset

REAL = {
    "svd": "svd",
    "cosmos": "cosmos2-2b",
    "wan2.1": "wan2.1-1.3b",
    "wan2.2": "wan2.2-ti2v-5b",
    "wan2.1-i2v": "wan2.1-i2v-14b",
}


def real_sizes(backbone: str, action_space: str) -> tuple[int, int]:
    with torch.device("meta"):
        wm = WorldModel.from_config(get_preset(REAL[backbone], action_space), load_codec=False)
    d = wm.describe()
    return d["base_params"], d["action_params"]


def tiny_latency(backbone: str, action_space: str, repeats: int, batch: int, size: int) -> tuple[float, bool]:
    wm = WorldModel.from_preset(TINY_PRESETS[backbone], action_space).eval()
    k = wm.codec.temporal_compression
    frames = 1 + k * 2 if k > 1 else 9
    g = torch.Generator().manual_seed(0)
    video = torch.rand(batch, frames, 3, size, size, generator=g) * 2 - 1
    actions = torch.randn(batch, frames, wm.action_space.dim, generator=g)
    x0 = wm.encode(video)
    cond = wm.condition(video[:, 0], x0[:, 0], frames=frames)
    noisy, t = torch.randn(x0.shape, generator=g), torch.full((batch,), 0.5)
    with torch.no_grad():
        identical = torch.equal(wm(noisy, t, cond, actions), wm.forward_bare(noisy, t, cond))
        for _ in range(3):  # warm-up
            wm(noisy, t, cond, actions), wm.forward_bare(noisy, t, cond)
        ratios = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            wm.forward_bare(noisy, t, cond)
            t1 = time.perf_counter()
            wm(noisy, t, cond, actions)
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(ratios), identical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--action-space", default="nav3")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = {}
    print(
        f"{'backbone':<8} {'base_params':>14} {'action_params':>14} {'param_ratio':>12} {'latency_ratio':>14} identical"
    )
    for backbone in REAL:
        base, action = real_sizes(backbone, args.action_space)
        latency, identical = tiny_latency(backbone, args.action_space, args.repeats, args.batch, args.size)
        results[backbone] = {
            "base_params": base,
            "action_params": action,
            "param_ratio": action / base,
            "latency_ratio": latency,
            "identical_at_init": identical,
            "real_preset": REAL[backbone],
            "tiny_preset": TINY_PRESETS[backbone],
        }
        print(f"{backbone:<8} {base:>14,} {action:>14,} {action / base:>12.5f} {latency:>14.3f} {identical}")
    ok = all(
        r["param_ratio"] <= 0.01 and r["latency_ratio"] <= 1.05 and r["identical_at_init"] for r in results.values()
    )
    print(f"targets (param_ratio <= 0.01, latency_ratio <= 1.05, identical): {'met' if ok else 'NOT met'}")
    atomic_write_json(
        args.json,
        {
            "action_space": args.action_space,
            "batch": args.batch,
            "size": args.size,
            "repeats": args.repeats,
            "backbones": results,
            "targets_met": ok,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
