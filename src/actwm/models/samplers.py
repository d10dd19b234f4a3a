"""Samplers: integrate an objective's probability-flow ODE from its prior to clean latents.

A sampler sees the network as `net(x, t, level)`: `level` is the index of the noise level in the objective's
schedule (`objective.schedule(steps)[level]`), so per-level decisions (which levels are guided) are made once,
before the loop, against the schedule's exact values, and no step reads a tensor back to the host.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

Net = Callable[..., torch.Tensor]  # net(x (b, f, c, h, w), t (b,), level: int) -> raw output


def euler_sample(objective, net: Net, x: torch.Tensor, steps: int, on_step=None) -> torch.Tensor:
    """Deterministic Euler integration of the probability-flow ODE from `objective.prior` to clean latents.

    Works for both objectives through `denoised`: `x <- x + (s_next - s) * (x - D(x, s)) / s`
    (for flow matching this is exactly `x <- x + (t_next - t) * v`).
    """
    levels = objective.schedule(steps).to(x.device)
    for i in range(steps):
        s, s_next = levels[i], levels[i + 1]
        sb = s.expand(x.shape[0])
        d = objective.denoised(partial(net, level=i), x, sb)
        x = x + (s_next - s) * (x - d) / s
        if on_step is not None:
            on_step(i)
    return x


def heun_sample(objective, net: Net, x: torch.Tensor, steps: int, on_step=None) -> torch.Tensor:
    """Heun's second-order method (EDM Algorithm 1 without churn); 2 network calls per step but the last."""
    levels = objective.schedule(steps).to(x.device)
    last_is_zero = float(objective.schedule(steps, dtype=torch.float64)[-1]) == 0.0  # once, on the host
    for i in range(steps):
        s, s_next = levels[i], levels[i + 1]
        d = (x - objective.denoised(partial(net, level=i), x, s.expand(x.shape[0]))) / s
        x_next = x + (s_next - s) * d
        if i + 1 < steps or not last_is_zero:
            d2 = (x_next - objective.denoised(partial(net, level=i + 1), x_next, s_next.expand(x.shape[0]))) / s_next
            x_next = x + (s_next - s) * (d + d2) / 2
        x = x_next
        if on_step is not None:
            on_step(i)
    return x


SAMPLERS = {"euler": euler_sample, "heun": heun_sample}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = ["euler_sample", "heun_sample", "get_sampler", "SAMPLERS"]
