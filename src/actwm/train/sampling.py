"""Stateless randomness of a training run: every random draw is a function of (seed, step, micro-batch, rank).

The clips of optimizer step `s`, micro-batch `m`, rank `r` (`StepIndexer`) and the diffusion noise/time of
that micro-batch (`noise_generator`) depend on nothing else, so a resumed run repeats the uninterrupted one
exactly and every rank sees different clips.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

import torch
from torch.utils.data import Sampler


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends only on `parts` (e.g. (seed, "noise", step, micro, rank))."""
    digest = hashlib.sha256(("actwm.train:" + ":".join(map(str, parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def noise_generator(seed: int, step: int, micro: int, rank: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of the diffusion time/noise/dropout of (optimizer step, micro-batch, rank)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, "noise", step, micro, rank))


class StepIndexer:
    """Stateless clip order: which dataset items form micro-batch `m` of step `s` on rank `r`.

    Item `j` of that micro-batch is global sample `g = ((s * grad_accum + m) * world + r) * batch + j`;
    epoch `g // n` shuffles the dataset with its own seeded permutation, and the item is
    `perm_epoch[g % n]`. Every epoch covers the dataset once, and ranks never share a sample of a step.
    """

    def __init__(self, n: int, seed: int, batch_size: int, grad_accum: int, world: int) -> None:
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.batch_size, self.grad_accum, self.world = n, seed, batch_size, grad_accum, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, step: int, micro: int, rank: int) -> list[int]:
        g0 = ((step * self.grad_accum + micro) * self.world + rank) * self.batch_size
        return [int(self._perm(g // self.n)[g % self.n]) for g in range(g0, g0 + self.batch_size)]


class StepBatchSampler(Sampler[list[int]]):
    """Yields the index lists of every micro-batch of steps `start..stop-1` for one rank, in order."""

    def __init__(self, indexer: StepIndexer, start: int, stop: int, rank: int) -> None:
        self.indexer, self.start, self.stop, self.rank = indexer, start, stop, rank

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.stop):
            for m in range(self.indexer.grad_accum):
                yield self.indexer.indices(s, m, self.rank)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.indexer.grad_accum


__all__ = ["derive_seed", "noise_generator", "StepIndexer", "StepBatchSampler"]
