"""Shared pieces of the closed-loop tasks: seeded episode sets with ids, scene ranges, SR / SPL statistics."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TASK_SCENE_BASE = 2_000_000_000  # task scenes: [TASK_SCENE_BASE, 2**31 - 1)
_Z95 = 1.959963984540054


# ------------------------------------------------------------------------------------------------ episode sets


@dataclass(frozen=True)
class EpisodeSet:
    """A fixed, seeded list of episodes. `id` is the sha256 (16 hex) of the full spec (`spec()`)."""

    task: str
    seed: int
    config: dict[str, Any]
    episodes: tuple[Any, ...]
    id: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:16]
        object.__setattr__(self, "id", digest)

    def spec(self) -> dict[str, Any]:
        """JSON-able description of everything that defines the set (goal images by sha256)."""
        return {
            "task": self.task,
            "seed": self.seed,
            "config": self.config,
            "episodes": [e.describe() for e in self.episodes],
        }

    def __iter__(self) -> Iterator[Any]:
        return iter(self.episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Any:
        return self.episodes[i]


def scene_stream(task: str, seed: int) -> Iterator[int]:
    """Endless distinct scene seeds of episode set `seed` for `task`, all in `[TASK_SCENE_BASE, 2**31 - 1)`."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"episode-set seed must be a non-negative int, got {seed!r}")
    salt = int.from_bytes(hashlib.sha256(task.encode()).digest()[:4], "little")
    rng = np.random.default_rng([int(seed), salt])
    seen: set[int] = set()
    while True:
        s = int(rng.integers(TASK_SCENE_BASE, 2**31 - 1))
        if s not in seen:
            seen.add(s)
            yield s


def _check_count(n: Any) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of episodes must be an int >= 1, got {n!r}")
    return int(n)


def check_disjoint(seeds: Sequence[int]) -> None:
    """Raise ValueError if any scene seed could be a training or held-out scene of the demo / data pipeline."""
    bad = [int(s) for s in seeds if s < TASK_SCENE_BASE]
    if bad:
        raise ValueError(f"task scene seeds {bad[:5]} overlap the training / held-out range [0, {TASK_SCENE_BASE})")


def image_sha(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ statistics


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean (seeded: the same values give the same interval)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def summarize(results: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """SR with a Wilson interval and the mean (bootstrap interval) of each of `keys` over per-episode results."""
    n = len(results)
    wins = sum(bool(r["success"]) for r in results)
    out: dict[str, Any] = {"n": n, "success_rate": wins / n if n else float("nan")}
    out["success_rate_ci95"] = list(wilson_interval(wins, n))
    for k in keys:
        vals = [float(r[k]) for r in results]
        out[k] = float(np.mean(vals)) if n else float("nan")
        out[f"{k}_ci95"] = list(bootstrap_interval(vals))
    return out


def spl(success: bool, shortest: float, taken: float) -> float:
    """Success weighted by path length: `S * l / max(p, l)` (Anderson et al. 2018)."""
    if not success:
        return 0.0
    return float(shortest / max(taken, shortest)) if shortest > 0 else 1.0


def config_dict(config: Any) -> dict[str, Any]:
    """JSON-able dataclass config (tuples become lists)."""
    return json.loads(json.dumps(asdict(config)))


def draw_episode_set(task: Any, seed: int, n: int) -> EpisodeSet:
    """`n` episodes from the scene stream of (`task.name`, `seed`): `task._draw_episode(index, scene)` returns
    an episode or None (scene skipped, deterministically)."""
    n = _check_count(n)
    out: list[Any] = []
    for scene in scene_stream(task.name, seed):
        ep = task._draw_episode(len(out), scene)
        if ep is not None:
            out.append(ep)
        if len(out) == n:
            break
    check_disjoint([e.scene_seed for e in out])
    return EpisodeSet(task.name, int(seed), config_dict(task.config), tuple(out))
