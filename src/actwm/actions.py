"""Action spaces: a typed description of an embodiment's action vector.

An `ActionSpace` names each dimension, its unit, and the statistics used to normalise it before the
action encoder sees it. Presets cover the embodiments of the papers; any custom `D` works too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ActionSpace:
    """Describes one embodiment's per-frame action vector of dimension `dim`.

    Attributes:
        name: identifier stored in checkpoints; loading checks it.
        names: one name per dimension.
        units: one unit string per dimension (e.g. "m", "rad", "1").
        mean, std: normalisation statistics, `normalise(a) = (a - mean) / std`.
    """

    name: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        d = len(self.names)
        if d < 1:
            raise ValueError(f"action space {self.name!r}: needs at least one dimension")
        if len(set(self.names)) != d:
            raise ValueError(f"action space {self.name!r}: dimension names must be unique, got {self.names}")
        if len(self.units) != d:
            raise ValueError(f"action space {self.name!r}: {d} names but {len(self.units)} units")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "mean", tuple(float(v) for v in (self.mean or (0.0,) * d)))
        object.__setattr__(self, "std", tuple(float(v) for v in (self.std or (1.0,) * d)))
        for key in ("mean", "std"):
            vals = getattr(self, key)
            if len(vals) != d:
                raise ValueError(f"action space {self.name!r}: field {key!r} has {len(vals)} values, expected {d}")
            if not all(math.isfinite(v) for v in vals):
                raise ValueError(f"action space {self.name!r}: field {key!r} holds NaN or inf")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"action space {self.name!r}: field 'std' must be > 0, got {self.std}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def with_stats(self, mean: Any, std: Any) -> "ActionSpace":
        """A copy with new normalisation statistics (e.g. from a dataset's `meta/stats.json`)."""
        return ActionSpace(self.name, self.names, self.units, tuple(mean), tuple(std), self.description)

    def normalise(self, actions: torch.Tensor) -> torch.Tensor:
        """`(..., dim)` raw actions -> `(..., dim)` normalised."""
        self.validate(actions)
        mean = torch.tensor(self.mean, dtype=actions.dtype, device=actions.device)
        std = torch.tensor(self.std, dtype=actions.dtype, device=actions.device)
        return (actions - mean) / std

    def denormalise(self, actions: torch.Tensor) -> torch.Tensor:
        """`(..., dim)` normalised -> `(..., dim)` raw."""
        mean = torch.tensor(self.mean, dtype=actions.dtype, device=actions.device)
        std = torch.tensor(self.std, dtype=actions.dtype, device=actions.device)
        return actions * std + mean

    def validate(self, actions: torch.Tensor, what: str = "actions") -> None:
        """Raise ValueError when the last axis is not `dim` or values are not finite."""
        if actions.shape[-1] != self.dim:
            raise ValueError(
                f"{what}: action space {self.name!r} has dimension {self.dim} ({', '.join(self.names)}), "
                f"got a last axis of {actions.shape[-1]} (shape {tuple(actions.shape)})"
            )
        if not torch.isfinite(actions).all():
            raise ValueError(f"{what}: contains NaN or inf values")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("names", "units", "mean", "std"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionSpace":
        return cls(
            name=d["name"],
            names=tuple(d["names"]),
            units=tuple(d["units"]),
            mean=tuple(d.get("mean", ())),
            std=tuple(d.get("std", ())),
            description=d.get("description", ""),
        )


HUMANOID25_NAMES = (
    "hip_yaw",
    "hip_roll",
    "hip_pitch",
    "knee_pitch",
    "ankle_roll",
    "ankle_pitch",
    "l_shoulder_pitch",
    "l_shoulder_roll",
    "l_shoulder_yaw",
    "l_elbow_pitch",
    "l_elbow_yaw",
    "l_wrist_pitch",
    "l_wrist_roll",
    "r_shoulder_pitch",
    "r_shoulder_roll",
    "r_shoulder_yaw",
    "r_elbow_pitch",
    "r_elbow_yaw",
    "r_wrist_pitch",
    "r_wrist_roll",
    "neck_pitch",
    "l_hand_closure",
    "r_hand_closure",
    "linear_velocity",
    "angular_velocity",
)

PRESETS: dict[str, ActionSpace] = {
    "nav3": ActionSpace(
        "nav3",
        ("dx", "dy", "dyaw"),
        ("m", "m", "rad"),
        description="planar navigation: displacement and heading change in the robot frame of the current step "
        "(x forward, y left)",
    ),
    "ee7": ActionSpace(
        "ee7",
        ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
        ("m", "m", "m", "rad", "rad", "rad", "1"),
        description="end-effector delta pose in the robot base frame plus gripper command (0 open, 1 closed)",
    ),
    "humanoid25": ActionSpace(
        "humanoid25",
        HUMANOID25_NAMES,
        ("rad",) * 21 + ("1", "1", "m/s", "rad/s"),
        description="1X world-model state order: 6 leg, 7 left-arm, 7 right-arm joints, neck pitch, "
        "hand closures (0 open, 1 closed), linear and angular velocity",
    ),
}


def custom(dim: int, name: str | None = None) -> ActionSpace:
    """An unnamed `dim`-dimensional action space (dimensions `a0..a{dim-1}`, unitless)."""
    if dim < 1:
        raise ValueError(f"custom action space: dim must be >= 1, got {dim}")
    return ActionSpace(name or f"custom{dim}", tuple(f"a{i}" for i in range(dim)), ("1",) * dim)


def get_action_space(spec: str | int | ActionSpace) -> ActionSpace:
    """Resolve a preset name (`nav3`, `ee7`, `humanoid25`), `customD`/an int D, or pass an ActionSpace through."""
    if isinstance(spec, ActionSpace):
        return spec
    if isinstance(spec, int):
        return custom(spec)
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.startswith("custom") and spec[6:].isdigit():
        return custom(int(spec[6:]))
    raise ValueError(f"unknown action space {spec!r}; presets: {', '.join(PRESETS)}, or 'customD' for any D")
