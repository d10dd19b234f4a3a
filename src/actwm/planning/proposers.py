"""Proposers: where candidate plans come from (enumeration, random shooting, CEM, MPPI).

All candidates of one iteration are returned together, so the world model imagines them in one batch.
Discrete vocabularies never propose "stop" (stopping is the agent's own decision, `actwm.planning.scorers`).
Row 0 of `propose` is the proposer's own preference (what runs without a world model).
"""

from __future__ import annotations

import itertools

import numpy as np

from actwm.planning.interface import STOP, Observation, Vocabulary


class _Base:
    name = "base"

    def __init__(self) -> None:
        self.vocab: Vocabulary | None = None
        self.rng = np.random.default_rng(0)

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        self.vocab, self.rng = vocabulary, rng

    def refine(self, plans: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        return None

    def advance(self, executed: int) -> None:
        pass

    def _moves(self) -> np.ndarray:
        return np.array([i for i in range(self.vocab.size) if i != STOP], dtype=np.int64)

    def _uniform(self, count: int, horizon: int) -> np.ndarray:
        if self.vocab.kind == "discrete":
            moves = self._moves()
            return moves[self.rng.integers(len(moves), size=(count, horizon))]
        low, high = np.asarray(self.vocab.low), np.asarray(self.vocab.high)
        return self.rng.uniform(low, high, size=(count, horizon, len(low)))


class RandomShooting(_Base):
    """Uniformly random plans (discrete: moves only; continuous: inside the bounds)."""

    name = "random"

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        return self._uniform(count, horizon)


class Enumerate(_Base):
    """Every move sequence of length L when there are at most `count`; else `count` of them at random.

    Discrete vocabularies only.
    """

    name = "enumerate"

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        if self.vocab.kind != "discrete":
            raise ValueError(f"proposer 'enumerate' needs a discrete vocabulary, got {self.vocab.name!r}")
        moves = self._moves()
        total = len(moves) ** horizon
        if total <= count:
            return np.array(list(itertools.product(moves, repeat=horizon)), dtype=np.int64)
        pick = self.rng.choice(total, size=count, replace=False)
        return np.stack([moves[np.array(np.unravel_index(i, (len(moves),) * horizon))] for i in pick])


class CEM(_Base):
    """Cross-entropy method, warm-started across decisions.

    Discrete: a categorical distribution per step `(L, moves)`; continuous: a Gaussian per step clipped to
    the bounds. Each iteration samples `count` plans (one batch), keeps the `elite_frac` best, refits with
    `smoothing` towards the previous distribution. `advance(k)` drops the executed k steps (warm start).
    """

    name = "cem"

    def __init__(self, iterations: int = 3, elite_frac: float = 0.25, smoothing: float = 0.2) -> None:
        super().__init__()
        if iterations < 1 or not 0 < elite_frac <= 1 or not 0 <= smoothing < 1:
            raise ValueError(
                f"CEM needs iterations >= 1, 0 < elite_frac <= 1, 0 <= smoothing < 1, got "
                f"{iterations}, {elite_frac}, {smoothing}"
            )
        self.iterations, self.elite_frac, self.smoothing = iterations, elite_frac, smoothing
        self._dist: tuple[np.ndarray, np.ndarray] | np.ndarray | None = None
        self._iter = 0
        self._count = 0

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        super().reset(vocabulary, rng)
        self._dist = None

    def _prior(self, horizon: int):
        if self.vocab.kind == "discrete":
            return np.full((horizon, len(self._moves())), 1.0 / len(self._moves()))
        low, high = np.asarray(self.vocab.low), np.asarray(self.vocab.high)
        return (np.tile((low + high) / 2, (horizon, 1)), np.tile((high - low) / 4, (horizon, 1)))

    def _fit_horizon(self, horizon: int) -> None:
        prior = self._prior(horizon)
        if self._dist is None:
            self._dist = prior
            return
        if self.vocab.kind == "discrete":
            have = self._dist[:horizon]
            self._dist = np.concatenate([have, prior[len(have) :]])
        else:
            mean, std = self._dist
            self._dist = (
                np.concatenate([mean[:horizon], prior[0][len(mean) :]]),
                np.concatenate([std[:horizon], prior[1][len(std) :]]),
            )

    def _sample(self, count: int) -> np.ndarray:
        if self.vocab.kind == "discrete":
            probs = self._dist
            cum = probs.cumsum(axis=1)
            u = self.rng.random((count, probs.shape[0], 1))
            idx = (u > cum[None]).sum(axis=2).clip(max=probs.shape[1] - 1)
            return self._moves()[idx]
        mean, std = self._dist
        x = mean + std * self.rng.standard_normal((count, *mean.shape))
        return np.clip(x, self.vocab.low, self.vocab.high)

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        self._fit_horizon(horizon)
        self._iter, self._count = 1, count
        plans = self._sample(count)
        plans[0] = self.mode()  # row 0: the current best guess
        return plans

    def mode(self) -> np.ndarray:
        """The distribution's most likely plan."""
        if self.vocab.kind == "discrete":
            return self._moves()[self._dist.argmax(axis=1)]
        return np.clip(self._dist[0], self.vocab.low, self.vocab.high)

    def refine(self, plans: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        n_elite = max(1, int(round(self.elite_frac * len(plans))))
        elite = plans[np.argsort(-np.asarray(scores), kind="stable")[:n_elite]]
        a = self.smoothing
        if self.vocab.kind == "discrete":
            moves = self._moves()
            onehot = (elite[..., None] == moves).astype(np.float64).mean(axis=0)
            self._dist = a * self._dist + (1 - a) * onehot
        else:
            mean, std = self._dist
            self._dist = (a * mean + (1 - a) * elite.mean(axis=0), a * std + (1 - a) * (elite.std(axis=0) + 1e-6))
        if self._iter >= self.iterations:
            return None
        self._iter += 1
        return self._sample(self._count)

    def advance(self, executed: int) -> None:
        if self._dist is None:
            return
        if self.vocab.kind == "discrete":
            self._dist = self._dist[executed:]
        else:
            self._dist = (self._dist[0][executed:], self._dist[1][executed:])
        if (self._dist if self.vocab.kind == "discrete" else self._dist[0]).shape[0] == 0:
            self._dist = None


class MPPI(CEM):
    """MPPI (continuous vocabularies): the mean moves to the softmax(score / temperature)-weighted average."""

    name = "mppi"

    def __init__(self, iterations: int = 3, temperature: float = 0.05, smoothing: float = 0.0) -> None:
        super().__init__(iterations=iterations, elite_frac=1.0, smoothing=smoothing)
        if temperature <= 0:
            raise ValueError(f"MPPI temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def refine(self, plans: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        if self.vocab.kind == "discrete":
            raise ValueError("proposer 'mppi' needs a continuous vocabulary (use 'cem' for discrete ones)")
        s = np.asarray(scores, dtype=np.float64)
        w = np.exp((s - s.max()) / self.temperature)
        w /= w.sum()
        mean, std = self._dist
        new_mean = np.einsum("m,mld->ld", w, plans)
        new_std = np.sqrt(np.einsum("m,mld->ld", w, (plans - new_mean) ** 2)) + 1e-6
        a = self.smoothing
        self._dist = (a * mean + (1 - a) * new_mean, a * std + (1 - a) * new_std)
        if self._iter >= self.iterations:
            return None
        self._iter += 1
        return self._sample(self._count)
