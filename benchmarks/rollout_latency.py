"""Imagination cost: chunked rollouts against frame-wise generation, guidance, and batched candidates.

    python benchmarks/rollout_latency.py --json results/rollout_latency.json [--quick] [--repeats 3]

All figures are ratios measured side by side in ONE run, with interleaved repeats (A, B, A, B, ...), and
reported as median [min, max] over repeats; a slower competitor gives a ratio > 1. Measured on the demo's
world model (`wan2.1-i2v-tiny` with the demo's overrides: 32 px frames, pixel codec spatial 2 / temporal 4,
2 layers, 6 heads x 32) with untrained weights (cost does not depend on the weights), 10 Euler steps:

1. seconds per rollout vs horizon 8..64 for
   - chunked: our rollout (chunks of the model's 9-frame window, 8 new frames per call),
   - frame-wise (ours): the same model called once per new frame (a 5-frame window, 1 frame kept),
   - CDiT: a frame-wise conditional diffusion transformer written from the NWM paper (Bar et al. 2025):
     per new frame, self-attention over the target frame's tokens, cross-attention to the tokens of the 4
     previous (context) frames, AdaLN-Zero modulation from time + action, at the same latent grid (16 x 16,
     2 x 2 patches) and sampler steps; its width is set so that its parameter count matches the chunked
     backbone's ("matched parameters"), and again at the backbone's width ("matched width"),
   and the growth exponent of chunked cost in the horizon (least squares on log-log);
2. guided / unguided cost of a 64-frame rollout at the demo's guidance interval (flow times (0.3, 1]);
3. batched imagination of M candidates in one call vs one at a time (M = 1..16; 9 frames) on 1 and 2 threads,
   and the per-candidate matmul rate relative to this CPU's large-matmul rate.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from einops import rearrange
from torch import nn

import actwm
from actwm.io import atomic_write_json
from actwm.models import wan
from actwm.models.world_model import WorldModel, get_preset
from actwm.rollout.rollout import RolloutConfig, rollout, to_model_actions

SIZE, SPATIAL, TEMPORAL, LAYERS, HEADS, HEAD_DIM, STEPS = 32, 2, 4, 2, 6, 32, 10
GUIDANCE_INTERVAL = (0.3, 1.0)


# ------------------------------------------------------------------------------------------ models


def demo_world_model() -> WorldModel:
    """The demo's backbone shape (see actwm.demo's model overrides), randomly initialised."""
    channels = 3 * SPATIAL * SPATIAL * TEMPORAL
    backbone = dict(
        wan.tiny_config(channels, concat_mask=TEMPORAL),
        num_layers=LAYERS,
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        ffn_dim=64 * HEADS,
    )
    cfg = get_preset(
        "wan2.1-i2v-tiny",
        "nav3",
        codec={"kind": "pixel", "spatial": SPATIAL, "temporal": TEMPORAL},
        backbone_config=backbone,
        hidden_dim=128,
        objective={"shift": 1.0},
        image_size=[SIZE, SIZE],
        clip_frames=9,
    )
    torch.manual_seed(0)
    return WorldModel.from_config(cfg).eval()


class CDiTBlock(nn.Module):
    """One CDiT block: AdaLN-Zero self-attention on target tokens, cross-attention to context tokens, MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width, elementwise_affine=False) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 9 * width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x `(b, n, width)` target tokens, context `(b, m, width)`, cond `(b, width)` -> `(b, n, width)`."""
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.modulation(nn.functional.silu(cond))[:, None].chunk(9, dim=-1)
        h = self.norm1(x) * (1 + c1) + s1
        x = x + g1 * self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x) * (1 + c2) + s2
        x = x + g2 * self.cross_attn(h, context, context, need_weights=False)[0]
        return x + g3 * self.mlp(self.norm3(x) * (1 + c3) + s3)


class CDiT(nn.Module):
    """Frame-wise conditional DiT after NWM: predicts one frame's latent from `context` previous frames."""

    def __init__(self, channels: int, width: int, heads: int, layers: int, action_dim: int = 3, patch: int = 2):
        super().__init__()
        self.patch = patch
        token = channels * patch * patch
        self.embed = nn.Linear(token, width)
        self.context_embed = nn.Linear(token, width)
        self.time_embed = nn.Sequential(nn.Linear(64, width), nn.SiLU(), nn.Linear(width, width))
        self.action_embed = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(CDiTBlock(width, heads) for _ in range(layers))
        self.out = nn.Linear(width, token)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """`(b, C, h, w)` -> `(b, h/p * w/p, C p p)`."""
        return rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=self.patch, q=self.patch)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """x `(b, C, h, w)` noisy frame, t `(b,)`, context `(b, k, C, h, w)`, action `(b, D)` -> `(b, C, h, w)`."""
        b, c, h, w = x.shape
        freqs = torch.exp(-math.log(1e4) * torch.arange(32, dtype=x.dtype) / 32)
        temb = torch.cat([torch.sin(t[:, None] * 1e3 * freqs), torch.cos(t[:, None] * 1e3 * freqs)], -1)
        cond = self.time_embed(temb) + self.action_embed(action)
        ctx = self.context_embed(self.tokens(rearrange(context, "b k c h w -> (b k) c h w")))
        ctx = rearrange(ctx, "(b k) n d -> b (k n) d", b=b)
        tok = self.embed(self.tokens(x))
        for block in self.blocks:
            tok = block(tok, ctx, cond)
        out = self.out(tok)
        return rearrange(out, "b (h w) (c p q) -> b c (h p) (w q)", h=h // self.patch, p=self.patch, q=self.patch)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_cdit(channels: int, target_params: int, heads: int) -> CDiT:
    """The CDiT whose parameter count is closest to `target_params` (width a multiple of `heads`)."""
    best = None
    for width in range(heads * 4, heads * 128, heads * 2):
        n = count(CDiT(channels, width, heads, LAYERS))
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (width, n)
    torch.manual_seed(0)
    return CDiT(channels, best[0], heads, LAYERS).eval()


# ------------------------------------------------------------------------------------------ rollouts


@torch.no_grad()
def cdit_rollout(model: CDiT, first: torch.Tensor, actions: torch.Tensor, context: int = 4) -> torch.Tensor:
    """Frame-wise: `(b, C, h, w)` first latent, `(b, T, D)` actions -> `(b, T, C, h, w)`, 10 Euler steps each."""
    frames = [first]
    for i in range(1, actions.shape[1]):
        ctx = torch.stack((frames[:1] * context + frames)[-context:], 1)
        x = torch.randn_like(first)
        ts = torch.linspace(1.0, 0.0, STEPS + 1)
        for s in range(STEPS):
            t = ts[s].expand(x.shape[0])
            x = x + (ts[s + 1] - ts[s]) * model(x, t, ctx, actions[:, i - 1])
        frames.append(x)
    return torch.stack(frames, 1)


@torch.no_grad()
def framewise_rollout(wm: WorldModel, first: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Our model, one new frame per call: a 5-frame window (1 + k) of which only frame 1 is kept."""
    frames, frame = [first], first
    for i in range(raw.shape[1] - 1):
        window = torch.cat([raw[:, i : i + 1], raw.new_zeros(raw.shape[0], TEMPORAL, raw.shape[2])], 1)
        video = wm.generate(frame, to_model_actions(wm, window), steps=STEPS, seeds=[i])
        frame = video[:, 1]
        frames.append(frame)
    return torch.stack(frames, 1)


def chunked(wm: WorldModel, first: torch.Tensor, raw: torch.Tensor, **kw) -> torch.Tensor:
    return rollout(wm, first, raw, cfg=RolloutConfig(steps=STEPS, **kw))


# ------------------------------------------------------------------------------------------ timing


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved A, B, ... per repeat after one warm-up call each."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def ratio(slow: list[float], fast: list[float]) -> dict[str, float]:
    r = [a / b for a, b in zip(slow, fast)]
    return {"median": round(statistics.median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}


def matmul_gflops(threads: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9


# ------------------------------------------------------------------------------------------ sections


def horizon_section(wm: WorldModel, horizons: list[int], repeats: int) -> dict:
    """1. chunked vs frame-wise (ours) vs CDiT at matched parameters and matched width."""
    torch.set_num_threads(1)
    channels_frame = 3 * SPATIAL * SPATIAL  # one pixel frame's latent on the same grid
    params = count(wm.adapter.backbone) + count(wm.encoder)
    cdit_p = matched_cdit(channels_frame, params, HEADS)
    cdit_w = CDiT(channels_frame, HEADS * HEAD_DIM, HEADS, LAYERS).eval()
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    latent = torch.randn(1, channels_frame, SIZE // SPATIAL, SIZE // SPATIAL)
    out: dict = {
        "params": {"chunked": params, "cdit_matched_params": count(cdit_p), "cdit_matched_width": count(cdit_w)}
    }
    seconds: dict[str, dict[str, float]] = {}
    for h in horizons:
        raw = torch.randn(1, h + 1, 3) * 0.05
        fns = {
            "chunked": lambda: chunked(wm, first, raw),
            "cdit_params": lambda: cdit_rollout(cdit_p, latent, raw),
            "cdit_width": lambda: cdit_rollout(cdit_w, latent, raw),
        }
        if h == max(horizons):
            fns["framewise"] = lambda: framewise_rollout(wm, first, raw)
        t = interleaved(fns, repeats)
        seconds[str(h)] = {k: round(statistics.median(v), 4) for k, v in t.items()}
        out.setdefault("cdit_over_chunked", {})[str(h)] = ratio(t["cdit_params"], t["chunked"])["median"]
        out.setdefault("cdit_width_over_chunked", {})[str(h)] = ratio(t["cdit_width"], t["chunked"])["median"]
        out.setdefault("detail", {})[str(h)] = {
            "cdit_over_chunked": ratio(t["cdit_params"], t["chunked"]),
            "cdit_width_over_chunked": ratio(t["cdit_width"], t["chunked"]),
        }
        if "framewise" in t:
            out["framewise_over_chunked"] = {str(h): ratio(t["framewise"], t["chunked"])["median"]}
            out["detail"][str(h)]["framewise_over_chunked"] = ratio(t["framewise"], t["chunked"])
    xs = np.log([int(h) for h in seconds])
    ys = np.log([seconds[h]["chunked"] for h in seconds])
    out["chunked_growth_exponent"] = round(float(np.polyfit(xs, ys, 1)[0]), 3) if len(xs) > 1 else None
    out["seconds"] = seconds
    return out


def guidance_section(wm: WorldModel, horizon: int, repeats: int) -> dict:
    """2. guided / unguided at the demo's interval."""
    torch.set_num_threads(1)
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    raw = torch.randn(1, horizon + 1, 3) * 0.05
    t = interleaved(
        {
            "guided": lambda: chunked(wm, first, raw, guidance=2.0, guidance_interval=GUIDANCE_INTERVAL),
            "unguided": lambda: chunked(wm, first, raw),
        },
        repeats,
    )
    return {"guided_over_unguided": ratio(t["guided"], t["unguided"]), "horizon": horizon}


def batched_section(wm: WorldModel, ms: list[int], threads: list[int], repeats: int) -> dict:
    """3. M candidates in one call vs one at a time (9 frames each)."""
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    out: dict = {"batched_speedup": {}, "detail": {}, "matmul_gflops": {}}
    for th in threads:
        out["matmul_gflops"][str(th)] = round(matmul_gflops(th), 1)
        torch.set_num_threads(th)
        for m in ms:
            raw = torch.randn(m, 9, 3) * 0.05
            t = interleaved(
                {
                    "sequential": lambda: [chunked(wm, first, raw[i : i + 1]) for i in range(m)],
                    "batched": lambda: chunked(wm, first, raw),
                },
                repeats,
            )
            r = ratio(t["sequential"], t["batched"])
            out["batched_speedup"].setdefault(str(th), {})[str(m)] = r["median"]
            out["detail"].setdefault(str(th), {})[str(m)] = {
                "ratio": r,
                "seconds_per_candidate_batched": round(statistics.median(t["batched"]) / m, 4),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="horizons 8/16/64, M in {1, 8}, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    horizons = [8, 16, 64] if args.quick else [8, 16, 32, 64]
    ms = [1, 8] if args.quick else [1, 2, 4, 8, 16]
    wm = demo_world_model()
    # 1-3, each printed as it finishes
    result = {"horizons": horizon_section(wm, horizons, repeats)}
    print("chunked vs frame-wise:", {k: result["horizons"][k] for k in ("cdit_over_chunked", "framewise_over_chunked")})
    result["guidance"] = guidance_section(wm, 64, repeats)
    print("guided / unguided:", result["guidance"]["guided_over_unguided"])
    result["batched"] = batched_section(wm, ms, [1, 2], repeats)
    print("batched speedup:", result["batched"]["batched_speedup"])
    summary = {
        "guided_over_unguided": result["guidance"]["guided_over_unguided"]["median"],
        "cdit_over_chunked": result["horizons"]["cdit_over_chunked"],
        "framewise_over_chunked": result["horizons"]["framewise_over_chunked"],
        "batched_speedup": result["batched"]["batched_speedup"],
    }
    fingerprint = {
        "actwm": actwm.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "settings": {"size": SIZE, "steps": STEPS, "repeats": repeats, "horizons": horizons, "M": ms},
    }
    atomic_write_json(args.json, {**summary, "detail": result, "fingerprint": fingerprint})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
