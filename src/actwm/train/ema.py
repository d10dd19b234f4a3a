"""Exponential moving average of a model's trainable parameters.

A float32 shadow copy of each tracked parameter, updated after every optimizer step with
`shadow <- decay * shadow + (1 - decay) * param`. `swap()` exchanges the shadow and live weights (to
save or evaluate the EMA model) and swapping back restores them exactly.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class EMA:
    """EMA over the named parameters of `model` that require grad (the trainable ones).

    Args:
        model: the module whose trainable parameters are tracked (names as in `named_parameters()`).
        decay: the EMA decay in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params: dict[str, nn.Parameter] = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow: dict[str, torch.Tensor] = {n: p.detach().float().clone() for n, p in self.params.items()}
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        self.updates += 1
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def swap(self) -> Iterator[None]:
        """Inside the block the model holds the EMA weights; afterwards exactly the live ones again."""
        backup = {name: p.detach().clone() for name, p in self.params.items()}
        try:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.shadow[name].to(p.dtype))
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        unexpected = sorted(set(state["shadow"]) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(f"EMA state does not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k] = v.to(self.shadow[k].device, torch.float32).clone()


__all__ = ["EMA"]
