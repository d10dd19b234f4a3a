"""Core types of closed-loop planning: agent vocabularies, observations, and the protocols every piece meets.

The loop (`actwm.planning.loop`) is written once against these protocols (World-In-World's propose ->
imagine -> revise -> execute):

    plans  = proposer.propose(obs, count=M, horizon=L, rng)      # (M, L) int or (M, L, D) float
    frames = world.imagine(obs, plans)                            # (M, L, 3, H, W) in [0, 1] or None
    scores = scorer.score(obs, plans, frames)                     # (M,), higher is better
    best   = plans[argmax(scores)]; execute best[:k]; observe again

Shapes and conventions:

- A *plan* is a sequence of L agent actions in one `Vocabulary`. Discrete vocabularies: `plans` is an
  int64 array `(M, L)` of primitive indices. Continuous vocabularies: a float64 array `(M, L, D)` in the
  vocabulary's units (nav3: metres and radians in the robot frame of the current step; ee7: metres,
  radians, gripper command in [0, 1]).
- Frames are float32 tensors in [0, 1] (`actwm.pixels`' "unit" convention), `(M, L, 3, H, W)`: frame
  `l` is what the agent would see once agent action `l` is complete (a world model that runs at a finer
  frame rate returns only the frames that close each agent action).
- Observations carry uint8 `(H, W, 3)` images (the simulator's and the datasets' convention).

Anything that only an oracle may use (the true pose, the simulator itself) is marked as such: adapters
and stop rules that read it set `is_oracle = True`, and results record the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------ vocabularies

#: The discrete navigation primitives (World-In-World's vocabulary, with our step sizes): name -> nav3 motion
#: (dx [m], dy [m], dyaw [rad]) in the robot frame. Index order is the public encoding of discrete plans.
FORWARD_M = 0.25
TURN_RAD = math.radians(22.5)
NAV_PRIMITIVES: dict[str, tuple[float, float, float]] = {
    "forward": (FORWARD_M, 0.0, 0.0),
    "left": (0.0, 0.0, TURN_RAD),
    "right": (0.0, 0.0, -TURN_RAD),
    "stop": (0.0, 0.0, 0.0),
}
STOP = list(NAV_PRIMITIVES).index("stop")


@dataclass(frozen=True)
class Vocabulary:
    """An agent's action vocabulary.

    Attributes:
        name: "nav_discrete", "nav3" or "ee7" (see `VOCABULARIES`).
        kind: "discrete" (plans are `(M, L)` int64 indices) or "continuous" (plans are `(M, L, dim)` float64).
        primitives: discrete only: primitive names, in index order.
        motions: discrete only: `(len(primitives), motion_dim)` the motion of each primitive in `motion_space`.
        low, high: continuous only: per-dimension bounds (inclusive).
        motion_space: the `actwm.actions` preset the plans map to per agent action ("nav3" or "ee7").
    """

    name: str
    kind: str
    motion_space: str
    primitives: tuple[str, ...] = ()
    motions: tuple[tuple[float, ...], ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise ValueError(f"vocabulary {self.name!r}: kind must be 'discrete' or 'continuous', got {self.kind!r}")
        if self.kind == "discrete" and len(self.primitives) != len(self.motions):
            raise ValueError(f"vocabulary {self.name!r}: one motion per primitive needed")
        if self.kind == "continuous" and (len(self.low) != len(self.high) or not self.low):
            raise ValueError(f"vocabulary {self.name!r}: low and high must be non-empty and of one length")

    @property
    def dim(self) -> int:
        """Per-action width of a plan: 0 for discrete (plans are `(M, L)`), D for continuous."""
        return 0 if self.kind == "discrete" else len(self.low)

    @property
    def size(self) -> int:
        """Number of primitives (discrete only)."""
        return len(self.primitives)

    def validate(self, plans: np.ndarray, what: str = "plans") -> np.ndarray:
        """Check `plans` against this vocabulary; return them as int64 `(M, L)` or float64 `(M, L, D)`.

        Raises ValueError naming `what` for a wrong rank or width, an index outside the vocabulary, a
        non-finite value or a value outside the bounds.
        """
        arr = np.asarray(plans)
        if self.kind == "discrete":
            if arr.ndim != 2:
                raise ValueError(f"{what}: discrete {self.name} plans must be (M, L) indices, got shape {arr.shape}")
            if arr.dtype.kind not in "iu" and not (np.isfinite(arr).all() and np.all(arr == np.round(arr))):
                raise ValueError(f"{what}: discrete {self.name} plans must hold integer indices")
            arr = arr.astype(np.int64)
            bad = (arr < 0) | (arr >= self.size)
            if bad.any():
                raise ValueError(
                    f"{what}: action index {int(arr[bad][0])} is outside the {self.name} vocabulary "
                    f"0..{self.size - 1} ({', '.join(self.primitives)})"
                )
            return arr
        if arr.ndim != 3 or arr.shape[-1] != self.dim:
            raise ValueError(f"{what}: {self.name} plans must be (M, L, {self.dim}), got shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: {self.name} plans hold NaN or inf")
        low, high = np.asarray(self.low), np.asarray(self.high)
        out = (arr < low - 1e-9) | (arr > high + 1e-9)
        if out.any():
            d = int(np.argwhere(out)[0, -1])
            raise ValueError(
                f"{what}: {self.name} dimension {d} holds {arr[..., d][out[..., d]][0]:.4g}, outside "
                f"[{low[d]:.4g}, {high[d]:.4g}]"
            )
        return arr

    def motions_of(self, plans: np.ndarray) -> np.ndarray:
        """Plans -> per-agent-action motions `(M, L, motion_dim)` float64 in `motion_space` units."""
        arr = self.validate(plans)
        if self.kind == "discrete":
            return np.asarray(self.motions, dtype=np.float64)[arr]
        return arr

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "motion_space": self.motion_space,
            "primitives": list(self.primitives),
            "low": list(self.low),
            "high": list(self.high),
        }


VOCABULARIES: dict[str, Vocabulary] = {
    "nav_discrete": Vocabulary(
        "nav_discrete",
        "discrete",
        "nav3",
        primitives=tuple(NAV_PRIMITIVES),
        motions=tuple(NAV_PRIMITIVES.values()),
    ),
    "nav3": Vocabulary("nav3", "continuous", "nav3", low=(-0.5, -0.5, -math.pi / 2), high=(0.5, 0.5, math.pi / 2)),
    "ee7": Vocabulary(
        "ee7",
        "continuous",
        "ee7",
        low=(-0.05, -0.05, -0.05, -0.25, -0.25, -0.25, 0.0),
        high=(0.05, 0.05, 0.05, 0.25, 0.25, 0.25, 1.0),
    ),
}


def get_vocabulary(name: str | Vocabulary) -> Vocabulary:
    """Resolve a vocabulary by name ("nav_discrete", "nav3", "ee7")."""
    if isinstance(name, Vocabulary):
        return name
    if name not in VOCABULARIES:
        raise ValueError(f"unknown action vocabulary {name!r}; choose from {', '.join(VOCABULARIES)}")
    return VOCABULARIES[name]


# ------------------------------------------------------------------------------------------------ observation


@dataclass
class Observation:
    """What the agent sees at one decision step.

    Attributes:
        rgb: `(H, W, 3)` uint8 current egocentric (nav) or third-person (manip) frame.
        goal: `(H, W, 3)` uint8 goal image (ImageNav) or None.
        step: agent actions executed so far in the episode.
        pose: ORACLE ONLY: the true `(3,)` (x, y, yaw) pose. Only adapters / stop rules with
            `is_oracle = True` may read it; everything else must behave identically when it is None.
        extras: task-specific, non-privileged extras (e.g. a target description).
    """

    rgb: np.ndarray
    goal: np.ndarray | None = None
    step: int = 0
    pose: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_image(self.rgb, "observation rgb")
        if self.goal is not None:
            check_image(self.goal, "goal image", like=self.rgb)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def check_image(img: np.ndarray, what: str, like: np.ndarray | None = None) -> None:
    """Raise ValueError unless `img` is `(H, W, 3)` uint8 (and, with `like`, of the same size)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what} must be a (H, W, 3) uint8 image, got {arr.dtype} {arr.shape}")
    if like is not None and arr.shape != np.asarray(like).shape:
        h, w = np.asarray(like).shape[:2]
        raise ValueError(f"{what} is {arr.shape[0]}x{arr.shape[1]} but observations are {h}x{w}")


# ------------------------------------------------------------------------------------------------ protocols


@runtime_checkable
class ImaginedWorld(Protocol):
    """A world model behind the planning interface (one adapter class per model type).

    Attributes:
        name: registry name ("none", "oracle", "actwm", "http", ...).
        is_oracle: True when it reads the true simulator state (upper-bound variants only).
        vocabularies: agent vocabularies whose plans it can imagine.
    """

    name: str
    is_oracle: bool
    vocabularies: tuple[str, ...]

    def imagine(self, observation: Observation, plans: np.ndarray) -> torch.Tensor | None:
        """All M plans at once -> `(M, L, 3, H, W)` float32 in [0, 1]; frame l closes agent action l.

        Returns None for "no world model" (the loop then follows the proposer's first plan).
        """
        ...

    def bind(self, task: "Task") -> None:
        """Check and remember the task: raise ValueError (before any episode starts) when this model cannot
        imagine `task.vocabulary` plans at `task.image_size` (H, W). The oracle keeps `task` to replay plans."""
        ...

    def reset(self, seed: int) -> None:
        """Start an episode: sampling noise of every later `imagine` derives from `seed` (determinism)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model in a results file (type, checkpoint sha256, settings)."""
        ...


@runtime_checkable
class Proposer(Protocol):
    """Proposes M candidate plans of horizon L (the base policy is a proposer).

    `propose` returns plans ordered by the proposer's own preference: row 0 is what the agent executes when
    no world model revises the proposals. Iterative proposers (CEM, MPPI) refine with `refine(plans,
    scores)` and return None when done; `advance(k)` shifts the warm start after k actions were executed.
    """

    name: str

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None: ...

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray: ...

    def refine(self, plans: np.ndarray, scores: np.ndarray) -> np.ndarray | None: ...

    def advance(self, executed: int) -> None: ...


@runtime_checkable
class Scorer(Protocol):
    """Scores imagined futures: `(M, L, 3, H, W)` frames -> `(M,)` float64, higher is better."""

    name: str

    def score(self, observation: Observation, plans: np.ndarray, frames: torch.Tensor) -> np.ndarray: ...


#: A factory that builds a world model from a spec string (the part after a registry prefix) and options.
WorldFactory = Callable[..., ImaginedWorld]
_WORLD_REGISTRY: dict[str, WorldFactory] = {}


def register_world_model(name: str) -> Callable[[WorldFactory], WorldFactory]:
    """Decorator: register a world-model adapter factory under `name` (used by `make_world_model`)."""

    def deco(factory: WorldFactory) -> WorldFactory:
        if name in _WORLD_REGISTRY and _WORLD_REGISTRY[name] is not factory:
            raise ValueError(f"world model {name!r} is already registered")
        _WORLD_REGISTRY[name] = factory
        return factory

    return deco


def registered_world_models() -> list[str]:
    return sorted(_WORLD_REGISTRY)


def world_factory(name: str) -> WorldFactory:
    if name not in _WORLD_REGISTRY:
        raise ValueError(f"unknown world model type {name!r}; registered: {', '.join(registered_world_models())}")
    return _WORLD_REGISTRY[name]


@runtime_checkable
class Task(Protocol):
    """An embodied task the loop runs (ImageNav on `nav`, push-to-target on `manip`).

    Attributes:
        name: "imagenav", "push".
        vocabulary: the agent vocabulary its `step` accepts.
        env: the simulator (its `unwrapped` offers exact `snapshot()` / `restore(state)`; oracle use only).
        image_size: (H, W) of its observations and goal images.
        budget: the most agent actions per episode.
    """

    name: str
    vocabulary: Vocabulary
    budget: int
    image_size: tuple[int, int]
    env: Any

    def reset(self, episode: Any) -> Observation:
        """Start `episode` (an entry of the task's episode set); returns the first observation with its goal."""
        ...

    def step(self, action: Any) -> Observation:
        """Execute ONE agent action (a primitive index, or a `(D,)` vector) in the simulator."""
        ...

    def env_actions(self, action: Any) -> list[np.ndarray]:
        """The simulator steps that execute ONE agent action (oracle replays use it; no bookkeeping)."""
        ...

    def result(self, stopped: bool) -> dict[str, Any]:
        """The finished episode's metrics: success, spl, spl_actions, path_length, actions, ..."""
        ...
