# 589 lines: one benchmark, five sections (horizons, guidance, batched, fast paths, compile) on one model
"""Imagination cost: chunked rollouts against frame-wise generation, guidance, batched candidates, compile.

    python benchmarks/rollout_latency.py --json results/rollout_latency.json [--quick] [--repeats 3] [--dtype bfloat16]

All figures are ratios measured side by side in ONE run, with interleaved repeats (A, B, A, B, ...), and
reported as median [min, max] over repeats; a slower competitor gives a ratio > 1. The headline keys use wall time;
`detail` also gives the ratios of process CPU time (steadier on a shared machine). Measured on the demo's
world model (`wan2.1-i2v-tiny` with the demo's overrides: 32 px frames, pixel codec spatial 2 / temporal 4,
2 layers, 6 heads x 32) with untrained weights (cost does not depend on the weights), 10 Euler steps:

1. seconds per rollout vs horizon 8..64 for
   - chunked: our rollout (chunks of the model's 9-frame window, 8 new frames per call),
   - frame-wise (ours): the same model called once per new frame (a 5-frame window, 1 frame kept),
   - CDiT: NWM's frame-wise conditional diffusion transformer (Bar et al. 2025, models.py), written from its
     description: per new frame, self-attention over the target frame's tokens, cross-attention to the tokens of the
     4 previous (context) frames, which every block normalises and modulates with the conditioning (adaLN-Zero, 11
     vectors), time + relative time + action (x, y, angle) embeddings, one patch embedding with learned position
     embeddings per frame slot, adaLN final layer; at the same latent grid (16 x 16, 2 x 2 patches) and sampler
     steps. The context's patch embedding is computed once per frame (it is the same at every step); its width is
     set so that its parameter count matches the chunked backbone + action encoder ("matched parameters"), and
     again at the backbone's width ("matched width"),
   and the growth exponent of chunked cost in the horizon (least squares on log-log);
2. guided / unguided cost of a 64-frame rollout at the demo's guidance interval (flow times (0.3, 1]);
3. batched imagination of M candidates in one call vs one at a time (M = 1..16; 9 frames) on 1 and 2 threads,
   and the per-candidate FLOP rate (torch's FLOP counter) relative to this CPU's large-matmul rate;
4. each inference fast path of the Wan adapter (`actwm.models.wan_fast.FastPaths`): cost with it off / all on;
5. `torch.compile` of the sampling backbone (`RolloutConfig.compile`, a second copy of the model compiled in place):
   eager / compiled for batched M = 8 (9 frames) and for one 64-frame chunked rollout, the CDiT (matched parameters,
   eager) over the compiled chunked rollout at 64 frames, and the one-off compilation's seconds.

`--sections` runs a subset (default: all five); the summary keys come from the sections that ran. `--compiled` runs
sections 1-4 with every network compiled (our backbone in place as `RolloutConfig.compile` does, and the CDiT
baselines): both sides of every ratio compiled, one static graph per shape (automatic dynamic shapes off, as a
planner's fixed proposal count gives).
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
from actwm.models.compiling import compile_in_place
from actwm.models.conditioning import Conditioning, Guidance
from actwm.models.wan_fast import FastPaths
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
        encoder={"hidden_dim": 128},
        objective={"shift": 1.0},
        image_size=[SIZE, SIZE],
        clip_frames=9,
    )
    torch.manual_seed(0)
    return WorldModel.from_config(cfg).eval()


def sinusoids(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """`(b,)` scalars -> `(b, dim)` cos/sin features (DiT's timestep embedding, max period 1e4)."""
    freqs = torch.exp(-math.log(1e4) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    args = t.float()[:, None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbed(nn.Module):
    """NWM's TimestepEmbedder: 256 sinusoids of a scalar -> MLP -> `width`."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoids(t))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class CDiTBlock(nn.Module):
    """NWM's CDiT block: adaLN-Zero self-attention on the target tokens, cross-attention to the context tokens (the
    context normalised and modulated by the same conditioning: 11 modulation vectors), MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm_cond, self.norm3 = (
            nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) for _ in range(4)
        )
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cttn = nn.MultiheadAttention(width, heads, add_bias_kv=True, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 11 * width))

    def forward(self, x: torch.Tensor, context: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x `(b, n, width)` target tokens, context `(b, m, width)`, cond `(b, width)` -> `(b, n, width)`."""
        s_msa, c_msa, g_msa, s_ctx, c_ctx, s_ca, c_ca, g_ca, s_mlp, c_mlp, g_mlp = self.modulation(cond)[:, None].chunk(
            11, dim=-1
        )
        h = modulate(self.norm1(x), s_msa, c_msa)
        x = x + g_msa * self.attn(h, h, h, need_weights=False)[0]
        ctx = modulate(self.norm_cond(context), s_ctx, c_ctx)
        x = x + g_ca * self.cttn(modulate(self.norm2(x), s_ca, c_ca), ctx, ctx, need_weights=False)[0]
        return x + g_mlp * self.mlp(modulate(self.norm3(x), s_mlp, c_mlp))


class CDiT(nn.Module):
    """NWM's frame-wise conditional DiT: predicts one frame's latent from `context` previous frames' latents.

    As in NWM: one patch embedding for target and context tokens plus a learned position embedding per frame slot;
    conditioning = time + relative time + action (x, y, angle each a sinusoid MLP); adaLN-modulated final layer.
    The output is the flow velocity (NWM's learned-sigma channels are a DDPM detail, dropped for flow matching).
    """

    def __init__(self, channels: int, width: int, heads: int, layers: int, tokens: int, context: int = 4):
        super().__init__()
        self.patch, self.context = 2, context
        token = channels * self.patch * self.patch
        self.embed = nn.Linear(token, width)  # NWM: a Conv2d with stride = kernel = patch, the same map
        self.pos = nn.Parameter(torch.randn(context + 1, tokens, width) * 0.02)
        self.t_embed, self.rel_t_embed = ScalarEmbed(width), ScalarEmbed(width)
        third = width // 3
        self.action_embed = nn.ModuleList(ScalarEmbed(w) for w in (third, third, width - 2 * third))
        self.blocks = nn.ModuleList(CDiTBlock(width, heads) for _ in range(layers))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """`(b, C, h, w)` -> `(b, h/p * w/p, C p p)`."""
        return rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=self.patch, q=self.patch)

    def embed_context(self, context: torch.Tensor) -> torch.Tensor:
        """`(b, k, C, h, w)` clean context latents -> `(b, k * n, width)` (the same at every sampler step)."""
        ctx = self.embed(self.tokens(rearrange(context, "b k c h w -> (b k) c h w")))
        return rearrange(ctx, "(b k) n d -> b k n d", k=context.shape[1]).add(self.pos[: self.context]).flatten(1, 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """x `(b, C, h, w)` noisy frame, t `(b,)`, context from `embed_context`, action `(b, 3)` -> `(b, C, h, w)`."""
        _, _, h, w = x.shape
        rel_t = torch.ones_like(t)  # the target is one step after the last context frame
        actions = torch.cat([e(action[:, i]) for i, e in enumerate(self.action_embed)], dim=-1)
        cond = self.t_embed(t * 1000) + self.rel_t_embed(rel_t) + actions
        tok = self.embed(self.tokens(x)) + self.pos[self.context]
        for block in self.blocks:
            tok = block(tok, context, cond)
        shift, scale = self.final_modulation(cond)[:, None].chunk(2, dim=-1)
        out = self.out(modulate(self.norm_out(tok), shift, scale))
        return rearrange(out, "b (h w) (c p q) -> b c (h p) (w q)", h=h // self.patch, p=self.patch, q=self.patch)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_cdit(channels: int, target_params: int, heads: int, tokens: int) -> CDiT:
    """The CDiT whose parameter count is closest to `target_params` (width a multiple of `heads`)."""
    best = None
    for width in range(heads * 4, heads * 128, heads * 2):
        n = count(CDiT(channels, width, heads, LAYERS, tokens))
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (width, n)
    torch.manual_seed(0)
    return CDiT(channels, best[0], heads, LAYERS, tokens).eval()


# ------------------------------------------------------------------------------------------ rollouts


@torch.no_grad()
def cdit_rollout(model: CDiT, first: torch.Tensor, actions: torch.Tensor, context: int = 4) -> torch.Tensor:
    """Frame-wise: `(b, C, h, w)` first latent, `(b, T, D)` actions -> `(b, T, C, h, w)`, 10 Euler steps each."""
    frames = [first]
    for i in range(1, actions.shape[1]):
        ctx = model.embed_context(torch.stack((frames[:1] * context + frames)[-context:], 1))
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


def use_paths(wm: WorldModel, paths: FastPaths) -> None:
    """Switch the adapter's inference fast paths (`actwm.models.wan_fast`) to `paths`."""
    wm.adapter.fast.__dict__.update(paths.__dict__)


def chunked(wm: WorldModel, first: torch.Tensor, raw: torch.Tensor, **kw) -> torch.Tensor:
    return rollout(wm, first, raw, cfg=RolloutConfig(steps=STEPS, **kw))


# ------------------------------------------------------------------------------------------ timing


DTYPE = torch.float32  # --dtype bfloat16: every timed call (ours and the baselines) runs under CPU bf16 autocast
CPU_SECONDS: dict[str, list[float]] = {}  # the last `interleaved` call's process CPU seconds per call
COMPILED = False  # --compiled: every network of sections 1-4 compiled


def call(fn: Callable[[], object]) -> object:
    if DTYPE == torch.float32:
        return fn()
    with torch.autocast("cpu", dtype=DTYPE):
        return fn()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds per call of each function, interleaved per repeat after one warm-up call each (process
    CPU seconds in `CPU_SECONDS`: steadier than wall time on a shared machine, but summed over threads)."""
    for fn in fns.values():
        call(fn)
    out: dict[str, list[float]] = {k: [] for k in fns}
    CPU_SECONDS.clear()
    for i in range(repeats):
        for name, fn in list(fns.items())[:: 1 if i % 2 == 0 else -1]:  # A, B, ... then ..., B, A: no order bias
            t0, c0 = time.perf_counter(), time.process_time()
            call(fn)
            out[name].append(time.perf_counter() - t0)
            CPU_SECONDS.setdefault(name, []).append(time.process_time() - c0)
    return out


def ratio(slow: list[float], fast: list[float]) -> dict[str, float]:
    r = [a / b for a, b in zip(slow, fast)]
    return {"median": round(statistics.median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}


def matmul_gflops(threads: int) -> float:
    """This CPU's large-matmul rate (1024^3, in `DTYPE`), best of 5 rounds of 10."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024, dtype=DTYPE), torch.randn(1024, 1024, dtype=DTYPE)
    a @ b
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return 10 * 2 * 1024**3 / best / 1e9


def candidate_gflop(wm: WorldModel) -> float:
    """GFLOP of one 9-frame candidate (matmuls, convolutions, attention; torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    first, raw = torch.rand(1, 3, SIZE, SIZE) * 2 - 1, torch.randn(1, 9, 3) * 0.05
    with FlopCounterMode(display=False) as counter:
        chunked(wm, first, raw)
    return counter.get_total_flops() / 1e9


# ------------------------------------------------------------------------------------------ sections


def horizon_section(wm: WorldModel, horizons: list[int], repeats: int) -> dict:
    """1. chunked vs frame-wise (ours) vs CDiT at matched parameters and matched width."""
    torch.set_num_threads(1)
    channels_frame = 3 * SPATIAL * SPATIAL  # one pixel frame's latent on the same grid
    params = count(wm.adapter.backbone) + count(wm.encoder)
    tokens = (SIZE // SPATIAL // 2) ** 2  # 2 x 2 patches of the 16 x 16 latent grid
    cdit_p = matched_cdit(channels_frame, params, HEADS, tokens)
    cdit_w = CDiT(channels_frame, HEADS * HEAD_DIM, HEADS, LAYERS, tokens).eval()
    if COMPILED:  # the baselines compiled too (`--compiled`): both sides of each ratio alike
        cdit_p.compile()
        cdit_w.compile()
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    latent = torch.randn(1, channels_frame, SIZE // SPATIAL, SIZE // SPATIAL)
    out: dict = {
        "params": {"chunked": params, "cdit_matched_params": count(cdit_p), "cdit_matched_width": count(cdit_w)},
        "width": {"chunked": HEADS * HEAD_DIM, "cdit_matched_params": cdit_p.blocks[0].norm1.normalized_shape[0]},
    }
    seconds: dict[str, dict[str, float]] = {}
    pairs = {"cdit_over_chunked": "cdit_params", "cdit_width_over_chunked": "cdit_width"}
    for h in horizons:
        raw = torch.randn(1, h + 1, 3) * 0.05
        fns = {
            "chunked": lambda: chunked(wm, first, raw),
            "cdit_params": lambda: cdit_rollout(cdit_p, latent, raw),
            "cdit_width": lambda: cdit_rollout(cdit_w, latent, raw),
        }
        if h == max(horizons):
            fns["framewise"] = lambda: framewise_rollout(wm, first, raw)
            pairs["framewise_over_chunked"] = "framewise"
        t = interleaved(fns, repeats)
        seconds[str(h)] = {k: round(statistics.median(v), 4) for k, v in t.items()}
        detail = out.setdefault("detail", {}).setdefault(str(h), {})
        for key, slow in pairs.items():
            if slow in t:
                out.setdefault(key, {})[str(h)] = ratio(t[slow], t["chunked"])["median"]
                detail[key] = {
                    "wall": ratio(t[slow], t["chunked"]),
                    "cpu": ratio(CPU_SECONDS[slow], CPU_SECONDS["chunked"]),
                }
    xs = np.log([int(h) for h in seconds])
    ys = np.log([seconds[h]["chunked"] for h in seconds])
    out["chunked_growth_exponent"] = round(float(np.polyfit(xs, ys, 1)[0]), 3) if len(xs) > 1 else None
    out["seconds"] = seconds
    return out


def guidance_section(wm: WorldModel, horizon: int, repeats: int) -> dict:
    """2. guided / unguided at the demo's interval, and the network calls per chunk of each."""
    torch.set_num_threads(1)
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    raw = torch.randn(1, horizon + 1, 3) * 0.05
    guided = lambda: chunked(wm, first, raw, guidance=2.0, guidance_interval=GUIDANCE_INTERVAL)  # noqa: E731

    def stock(fn: Callable[[], object]) -> Callable[[], object]:
        """`fn` with every inference fast path off (the stock diffusers modules: the code before them)."""

        def run() -> object:
            use_paths(wm, FastPaths.off())
            try:
                return fn()
            finally:
                use_paths(wm, FastPaths())

        return run

    unguided = lambda: chunked(wm, first, raw)  # noqa: E731
    fns = {"guided": guided, "unguided": unguided, "guided_stock": stock(guided), "unguided_stock": stock(unguided)}
    t = interleaved(fns, repeats)
    cpu = dict(CPU_SECONDS)
    batches: list[int] = []
    handle = wm.adapter.backbone.register_forward_pre_hook(
        lambda m, a, kw: batches.append(kw["timestep"].shape[0]), with_kwargs=True
    )
    guided()
    handle.remove()
    chunks = -(-horizon // 8)
    forward = forward_costs(wm, first, repeats * 10)
    return {
        **forward,
        "guided_over_unguided": ratio(t["guided"], t["unguided"]),
        "guided_over_unguided_cpu": ratio(cpu["guided"], cpu["unguided"]),
        "stock_guided_over_unguided": ratio(t["guided_stock"], t["unguided_stock"]),
        "stock_guided_over_unguided_cpu": ratio(cpu["guided_stock"], cpu["unguided_stock"]),
        "stock_over_fast": {k: ratio(t[f"{k}_stock"], t[k]) for k in ("guided", "unguided")},
        "horizon": horizon,
        "guided_forwards_per_chunk": {"batch 1": batches.count(1) // chunks, "batch 2": batches.count(2) // chunks},
    }


def forward_costs(wm: WorldModel, first: torch.Tensor, repeats: int) -> dict:
    """One network call at a guided level (conditional + action-free copies, batch 2) vs an unguided one (batch 1),
    and the floor this puts under guided / unguided: (unguided levels + guided levels * that ratio) / levels."""
    raw = torch.randn(1, 9, 3) * 0.05
    cond = wm.condition(first, frames=9)
    branches = wm.conditioning(to_model_actions(wm, raw))
    stacked = Conditioning.stack([branches, branches.without(["actions"])], like=branches)
    x, t, cond2 = torch.randn(1, 3, 48, SIZE // SPATIAL, SIZE // SPATIAL), torch.full((1,), 0.5), cond.repeat(2)
    with torch.no_grad():
        t_ = interleaved(
            {
                "batch1": lambda: wm.net(x, t, cond, branches),
                "batch2": lambda: wm.net(x, t, cond2, stacked, copies=2),
            },
            repeats,
        )
    r = ratio(t_["batch2"], t_["batch1"])["median"]
    levels = wm.objective.schedule(STEPS, dtype=torch.float64).tolist()[:STEPS]
    guided = sum(Guidance.of(2.0, GUIDANCE_INTERVAL).guided_levels(levels))
    return {
        "forward_guided_over_unguided": r,
        "forward_guided_over_unguided_cpu": ratio(CPU_SECONDS["batch2"], CPU_SECONDS["batch1"])["median"],
        "guided_levels": guided,
        "network_floor": round((STEPS - guided + guided * r) / STEPS, 3),
    }


def batched_section(wm: WorldModel, ms: list[int], threads: list[int], repeats: int) -> dict:
    """3. M candidates in one call vs one at a time (9 frames each); per-candidate FLOP rate vs large matmuls."""
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    gflop = candidate_gflop(wm)
    out: dict = {"batched_speedup": {}, "detail": {}, "matmul_gflops": {}, "candidate_gflop": round(gflop, 4)}
    for th in threads:
        rate = matmul_gflops(th)
        out["matmul_gflops"][str(th)] = round(rate, 1)
        torch.set_num_threads(th)
        if COMPILED:  # inductor's CPU kernels keep the thread count they were compiled at: compile again
            torch._dynamo.reset()
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
            per_candidate = statistics.median(t["batched"]) / m
            out["batched_speedup"].setdefault(str(th), {})[str(m)] = r["median"]
            out["detail"].setdefault(str(th), {})[str(m)] = {
                "ratio": r,
                "ratio_cpu": ratio(CPU_SECONDS["sequential"], CPU_SECONDS["batched"]),
                "seconds_per_candidate_batched": round(per_candidate, 4),
                "fraction_of_matmul_rate": round(gflop / per_candidate / rate, 3),
            }
    return out


def fast_paths_section(wm: WorldModel, horizon: int, repeats: int) -> dict:
    """4. each inference fast path's gain (actwm.models.wan_fast): cost with it off / cost with all on, unguided and
    guided (the demo's interval), and everything off; one thread."""
    torch.set_num_threads(1)
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    raw = torch.randn(1, horizon + 1, 3) * 0.05
    settings = {"all_on": FastPaths(), "all_off": FastPaths.off()}
    settings.update({f"no_{n}": FastPaths(**{n: False}) for n in FastPaths.names()})

    def run(paths: FastPaths, **kw) -> Callable[[], object]:
        def fn() -> object:
            use_paths(wm, paths)
            return chunked(wm, first, raw, **kw)

        return fn

    out: dict = {"horizon": horizon}
    for mode, kw in (("unguided", {}), ("guided", {"guidance": 2.0, "guidance_interval": GUIDANCE_INTERVAL})):
        t = interleaved({k: run(p, **kw) for k, p in settings.items()}, repeats)
        cpu = dict(CPU_SECONDS)
        out[mode] = {
            k: {"wall": ratio(t[k], t["all_on"])["median"], "cpu": ratio(cpu[k], cpu["all_on"])["median"]}
            for k in settings
            if k != "all_on"
        }
    run(FastPaths())()
    return out


def compile_section(m: int, horizon: int, repeats: int) -> dict:
    """5. the compiled sampling backbone (`RolloutConfig.compile`) against the same model eager, one thread: batched
    M candidates (9 frames) and one `horizon`-frame rollout; and the CDiT (matched parameters) over it."""
    torch.set_num_threads(1)
    eager, compiled = demo_world_model(), demo_world_model()
    first = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    batch, long = torch.randn(m, 9, 3) * 0.05, torch.randn(1, horizon + 1, 3) * 0.05
    t0, c0 = time.perf_counter(), time.process_time()
    for raw in (batch, long):  # every shape the timed calls use is compiled here, not while timing
        call(lambda: chunked(compiled, first, raw, compile=True))
    out: dict = {
        "first_calls_seconds": round(time.perf_counter() - t0, 1),
        "first_calls_cpu": round(time.process_time() - c0, 1),
    }
    t = interleaved(
        {
            "eager": lambda: chunked(eager, first, batch),
            "compiled": lambda: chunked(compiled, first, batch, compile=True),
        },
        repeats,
    )
    out[f"batched_m{m}_eager_over_compiled"] = {
        "wall": ratio(t["eager"], t["compiled"]),
        "cpu": ratio(CPU_SECONDS["eager"], CPU_SECONDS["compiled"]),
    }
    tokens = (SIZE // SPATIAL // 2) ** 2
    cdit = matched_cdit(3 * SPATIAL * SPATIAL, count(eager.adapter.backbone) + count(eager.encoder), HEADS, tokens)
    latent = torch.randn(1, 3 * SPATIAL * SPATIAL, SIZE // SPATIAL, SIZE // SPATIAL)
    t = interleaved(
        {
            "eager": lambda: chunked(eager, first, long),
            "compiled": lambda: chunked(compiled, first, long, compile=True),
            "cdit": lambda: cdit_rollout(cdit, latent, long),
        },
        repeats,
    )
    for key, (slow, fast) in {
        f"chunked_{horizon}_eager_over_compiled": ("eager", "compiled"),
        f"cdit_over_compiled_chunked_{horizon}": ("cdit", "compiled"),
        f"cdit_over_eager_chunked_{horizon}": ("cdit", "eager"),
    }.items():
        out[key] = {"wall": ratio(t[slow], t[fast]), "cpu": ratio(CPU_SECONDS[slow], CPU_SECONDS[fast])}
    return out


def fingerprint(repeats: int, horizons: list[int], ms: list[int]) -> dict:
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
    return {
        "actwm": actwm.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": [f for f in wanted if f in flags],
        "cpus": os.cpu_count(),
        "threads": {"horizons, guidance, fast paths": 1, "batched": [1, 2]},
        "dtype": str(DTYPE).removeprefix("torch."),
        "compiled": COMPILED,
        "fast_paths": FastPaths().__dict__,
        "settings": {"size": SIZE, "steps": STEPS, "repeats": repeats, "horizons": horizons, "M": ms},
        "model": {
            "preset": "wan2.1-i2v-tiny",
            "layers": LAYERS,
            "heads": HEADS,
            "head_dim": HEAD_DIM,
            "init": "seed 0",
        },
    }


SECTIONS = ("horizons", "guidance", "batched", "fast_paths", "compile")
SUMMARY = {  # headline key: (section, how to read it from the results)
    "guided_over_unguided": ("guidance", lambda r: r["guidance"]["guided_over_unguided"]["median"]),
    "cdit_over_chunked": ("horizons", lambda r: r["horizons"]["cdit_over_chunked"]),
    "framewise_over_chunked": ("horizons", lambda r: r["horizons"]["framewise_over_chunked"]),
    "batched_speedup": ("batched", lambda r: r["batched"]["batched_speedup"]),
    "compile_speedup": (
        "compile",
        lambda r: {k: v["wall"]["median"] for k, v in r["compile"].items() if isinstance(v, dict)},
    ),
}


def main(argv: list[str] | None = None) -> int:
    global DTYPE, COMPILED
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="horizons 8/16/64, M in {1, 8}, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; 2 with --quick)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="bfloat16: CPU autocast")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="default: all")
    parser.add_argument("--compiled", action="store_true", help="sections 1-4 with every network compiled")
    args = parser.parse_args(argv)
    DTYPE, COMPILED = getattr(torch, args.dtype), args.compiled
    repeats = args.repeats or (2 if args.quick else 3)
    horizons = [8, 16, 64] if args.quick else [8, 16, 32, 64]
    ms = [1, 8] if args.quick else [1, 2, 4, 8, 16]
    wm = demo_world_model()
    if COMPILED:
        torch._dynamo.config.automatic_dynamic_shapes = False  # one static graph per shape, as in planning
        torch._dynamo.config.cache_size_limit = 64
        compile_in_place(wm.adapter.backbone, "rollout_latency --compiled")
    runs = {
        "horizons": lambda: horizon_section(wm, horizons, repeats),
        "guidance": lambda: guidance_section(wm, 64, repeats),
        "batched": lambda: batched_section(wm, ms, [1, 2], repeats),
        "fast_paths": lambda: fast_paths_section(wm, 16 if args.quick else 64, repeats),
        "compile": lambda: compile_section(8, 64, repeats),  # last: it compiles a second model
    }
    result = {}
    for name in [n for n in SECTIONS if n in args.sections]:  # 1-5, each printed as it finishes
        result[name] = runs[name]()
        print(f"{name}:", {k: v for k, v in result[name].items() if k not in ("detail", "seconds")})
    summary = {key: pick(result) for key, (section, pick) in SUMMARY.items() if section in result}
    out = {**summary, "detail": result, "fingerprint": {**fingerprint(repeats, horizons, ms), "sections": list(result)}}
    atomic_write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
