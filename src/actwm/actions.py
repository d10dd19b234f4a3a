"""Actions: typed action spaces, the stored-rows -> clip-actions transforms, and normalisers.

Ground floor: imports only `actwm.geometry`. Everything is torch-first (float64 math on the input's
device; numpy in -> numpy out where the data readers need it), so the clip sampler, the trainer, rollouts
and planners share one definition and never round-trip through numpy.

Conventions of an action clip of `n` frames (rows `(..., n, D)`):

- `delta` (ours): row k takes clip frame k to k+1 in the robot frame of frame k (SE(2) composition of the
  stored rows in between for `nav3`, a sum otherwise; absolute dimensions such as the `ee7` gripper command
  and every `humanoid25` dimension take the last stored row). The last row looks past the clip and is zero
  where the episode ends.
- `cumulative`: row k is the pose of clip frame k in clip frame 0's robot frame (row 0 zeros; SE(2) for
  `nav3`, cumulative sums otherwise, absolute dimensions the value that led to frame k).
- `frame0_delta` (NWM's, only through the `nwm` normaliser): row k = cumulative pose k+1 minus cumulative
  pose k, both in clip frame 0's robot frame (not frame k's), yaw the difference of the *wrapped* cumulative
  yaws (so it jumps by 2 pi where the clip's heading crosses +-pi: NWM's behaviour, kept on purpose).

Normalisers (`ActionNormaliser`, kinds): `std` = (a - mean) / std; `none` = identity; `nwm_scale` = NWM's
scale on any convention (xy / metric spacing * 2 / (max - min), yaw unchanged, no offset: our per-step
deltas at NWM's scale); `nwm` = NWM exactly: for `cumulative`, `normalize_data` (xy / spacing, min-max with
min (-2.5, -4), max (5, 4) to [-1, 1]); for `delta`, NWM's `get_delta_np` over the normalised cumulative
actions, i.e. the `frame0_delta` convention scaled, with row 0 keeping the offset `normalize_data(0)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from actwm.geometry import se2_compose, se2_inverse

ACTION_MODES = ("delta", "cumulative")
CONVENTIONS = ("delta", "cumulative", "frame0_delta")
NORMALISATIONS = ("std", "nwm", "nwm_scale", "none")
# dimensions that hold absolute commands/targets rather than increments
ABSOLUTE_DIMS: dict[str, tuple[int, ...] | str] = {"ee7": (6,), "humanoid25": "all"}
# NWM's `action_stats` (config/data_config.yaml): min-max of xy in metric-spacing units
NWM_ACTION_MIN = (-2.5, -4.0)
NWM_ACTION_MAX = (5.0, 4.0)


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


# ------------------------------------------------------------------------------------ clip transforms


def _torch(x: np.ndarray | torch.Tensor, dtype: torch.dtype | None = torch.float64) -> tuple[torch.Tensor, bool]:
    """`x` as a tensor (numpy shares memory; `dtype` None keeps it) and whether it came as numpy."""
    was_numpy = not isinstance(x, torch.Tensor)
    t = torch.from_numpy(np.asarray(x)) if was_numpy else x
    return (t if dtype is None else t.to(dtype)), was_numpy


def _back(x: torch.Tensor, to_numpy: bool) -> np.ndarray | torch.Tensor:
    return x.numpy() if to_numpy else x


def absolute_mask(space: str, d: int, device: torch.device | str | None = None) -> torch.Tensor:
    """`(d,)` bool: dimensions of `space` that hold absolute commands (see `ABSOLUTE_DIMS`)."""
    mask = torch.zeros(d, dtype=torch.bool, device=device)
    spec = ABSOLUTE_DIMS.get(space)
    if spec == "all":
        mask[:] = True
    elif spec:
        mask[list(spec)] = True
    return mask


def gather_windows(
    raw: np.ndarray | torch.Tensor, starts: np.ndarray | torch.Tensor, n: int, step: int
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    """Stored rows `raw` `(T, D)` per clip step: windows `(B, n, step, D)` and validity `(B, n, step)`
    (False past the episode end) for clips starting at `starts` `(B,)`; numpy in -> numpy out."""
    r, was_numpy = _torch(raw, None)
    s = torch.as_tensor(np.asarray(starts) if was_numpy else starts, device=r.device).long()
    t = r.shape[0]
    ar = torch.arange(n, device=r.device) * step
    idx = s[:, None, None] + ar[None, :, None] + torch.arange(step, device=r.device)[None, None, :]
    valid = idx < t
    return _back(r[idx.clamp(max=t - 1)], was_numpy), _back(valid, was_numpy)


def compose_steps(windows: torch.Tensor, valid: torch.Tensor, space: str) -> torch.Tensor:
    """`(B, n, step, D)` stored rows (float) + `(B, n, step)` validity -> `(B, n, D)` per-clip-step deltas:
    SE(2) composition for `nav3`, sums otherwise, absolute dimensions the last valid row."""
    d = windows.shape[-1]
    absolute = absolute_mask(space, d, windows.device)
    inc = torch.where(valid[..., None], windows, torch.zeros((), dtype=windows.dtype, device=windows.device))
    if space == "nav3":
        delta = inc[:, :, 0]
        for j in range(1, inc.shape[2]):
            delta = se2_compose(delta, inc[:, :, j])
    else:
        delta = inc.sum(2)
    if absolute.any():
        last = (valid.sum(2) - 1).clamp(min=0)  # last valid stored row per clip step
        picked = torch.gather(windows, 2, last[:, :, None, None].expand(-1, -1, 1, d))[:, :, 0]
        delta = torch.where(absolute, picked, delta)
    return delta


def _poses(delta: torch.Tensor, space: str) -> torch.Tensor:
    """`(..., n, D)` deltas -> `(..., n + 1, D)` cumulative poses of frames 0..n relative to frame 0."""
    rows = [torch.zeros_like(delta[..., 0, :])]
    for k in range(delta.shape[-2]):
        step = delta[..., k, :]
        rows.append(se2_compose(rows[-1], step) if space == "nav3" else rows[-1] + step)
    out = torch.stack(rows, -2)
    absolute = absolute_mask(space, delta.shape[-1], delta.device)
    if absolute.any():
        out[..., 1:, :] = torch.where(absolute, delta, out[..., 1:, :])
    return out


def delta_to_cumulative(delta: np.ndarray | torch.Tensor, space: str) -> np.ndarray | torch.Tensor:
    """`(..., n, D)` `delta` actions -> `(..., n, D)` `cumulative` (row 0 zeros; the last delta row, which
    looks past the clip, is not used). float64; numpy in -> numpy out."""
    d, was_numpy = _torch(delta)
    return _back(_poses(d, space)[..., :-1, :], was_numpy)


def cumulative_to_delta(cumulative: np.ndarray | torch.Tensor, space: str) -> np.ndarray | torch.Tensor:
    """`(..., n, D)` `cumulative` actions -> `(..., n, D)` `delta` (row k: frame k to k+1 in frame k's robot
    frame; absolute dimensions the value that leads to frame k+1; the last row, past the clip, zeros)."""
    c, was_numpy = _torch(cumulative)
    out = torch.zeros_like(c)
    if space == "nav3":
        out[..., :-1, :] = se2_compose(se2_inverse(c[..., :-1, :]), c[..., 1:, :])
    else:
        out[..., :-1, :] = c[..., 1:, :] - c[..., :-1, :]
    absolute = absolute_mask(space, c.shape[-1], c.device)
    if absolute.any():
        out[..., :-1, :] = torch.where(absolute, c[..., 1:, :], out[..., :-1, :])
    return _back(out, was_numpy)


def delta_to_frame0_delta(delta: np.ndarray | torch.Tensor, space: str) -> np.ndarray | torch.Tensor:
    """`(..., n, D)` `delta` -> `(..., n, D)` NWM's `frame0_delta`: row k = pose k+1 - pose k, both
    cumulative in frame 0's robot frame, yaw differenced from the wrapped cumulative yaw (2 pi jumps kept)."""
    d, was_numpy = _torch(delta)
    poses = _poses(d, space)
    out = poses[..., 1:, :] - poses[..., :-1, :]
    absolute = absolute_mask(space, d.shape[-1], d.device)
    if absolute.any():
        out = torch.where(absolute, d, out)
    return _back(out, was_numpy)


def transform_actions(
    windows: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor, space: str, mode: str
) -> np.ndarray | torch.Tensor:
    """`(B, n, step, D)` stored rows + `(B, n, step)` validity -> `(B, n, D)` float64 clip actions in
    convention `mode` (`delta`, `cumulative` or `frame0_delta`; module docstring). numpy in -> numpy out."""
    if mode not in CONVENTIONS:
        raise ValueError(f"action convention must be one of {CONVENTIONS}, got {mode!r}")
    w, was_numpy = _torch(windows)
    v = torch.as_tensor(np.asarray(valid) if was_numpy else valid, device=w.device)
    delta = compose_steps(w, v, space)
    if mode == "cumulative":
        delta = _poses(delta, space)[..., :-1, :]
    elif mode == "frame0_delta":
        delta = delta_to_frame0_delta(delta, space)
    return _back(delta, was_numpy)


# ---------------------------------------------------------------------------------------- normalisers


@dataclass(frozen=True)
class ActionNormaliser:
    """Maps clip actions `(..., n, D)` to what a model sees: `(a - loc) / scale` per dimension, except that
    row 0 uses `first_loc` when it is set (NWM's `delta`: row 0 keeps the offset `normalize_data(0)`).

    Build with `ActionNormaliser.build(kind, mode, dim, ...)` (module docstring for the kinds); save with
    `to_dict()` beside a checkpoint. `convention` is the raw transform the normaliser expects its input in
    (`transform_actions(..., normaliser.convention)`).
    """

    kind: str
    mode: str
    loc: tuple[float, ...]
    scale: tuple[float, ...]
    first_loc: tuple[float, ...] | None = None
    metric_spacing: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in NORMALISATIONS:
            raise ValueError(f"ActionNormaliser: kind must be one of {NORMALISATIONS}, got {self.kind!r}")
        if self.mode not in ACTION_MODES:
            raise ValueError(f"ActionNormaliser: mode must be one of {ACTION_MODES}, got {self.mode!r}")
        object.__setattr__(self, "loc", tuple(float(v) for v in self.loc))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        if self.first_loc is not None:
            object.__setattr__(self, "first_loc", tuple(float(v) for v in self.first_loc))
        d = len(self.loc)
        if d < 1 or len(self.scale) != d or (self.first_loc is not None and len(self.first_loc) != d):
            raise ValueError(f"ActionNormaliser: loc, scale (and first_loc) need one value per dimension, got {self}")
        vals = self.loc + self.scale + (self.first_loc or ())
        if not all(math.isfinite(v) for v in vals) or any(v <= 0 for v in self.scale):
            raise ValueError(f"ActionNormaliser: loc/scale must be finite and scale > 0, got {self}")

    @classmethod
    def build(
        cls,
        kind: str,
        mode: str,
        dim: int,
        *,
        mean: Any = None,
        std: Any = None,
        metric_spacing: float | None = None,
    ) -> "ActionNormaliser":
        """A normaliser of `kind` for `mode` actions of dimension `dim` (`std` needs `mean`/`std`; `nwm` and
        `nwm_scale` need `metric_spacing` and dim 3: nav3's (dx, dy, dyaw))."""
        if kind == "std":
            if mean is None or std is None:
                raise ValueError("ActionNormaliser: kind 'std' needs mean and std")
            return cls(kind, mode, tuple(np.asarray(mean, np.float64).reshape(-1)), tuple(np.asarray(std).reshape(-1)))
        if kind == "none":
            return cls(kind, mode, (0.0,) * dim, (1.0,) * dim)
        if kind not in ("nwm", "nwm_scale"):
            raise ValueError(f"ActionNormaliser: kind must be one of {NORMALISATIONS}, got {kind!r}")
        if dim != 3 or metric_spacing is None or not metric_spacing > 0:
            raise ValueError(f"ActionNormaliser: kind {kind!r} needs nav3 actions (D=3) and a metric spacing > 0")
        lo, hi = np.asarray(NWM_ACTION_MIN), np.asarray(NWM_ACTION_MAX)
        # normalize_data(x / s) = (x - s * (lo + hi) / 2) / (s * (hi - lo) / 2)
        scale = (*(metric_spacing * (hi - lo) / 2), 1.0)
        centre = (*(metric_spacing * (lo + hi) / 2), 0.0)
        zero = (0.0, 0.0, 0.0)
        if kind == "nwm_scale":
            return cls(kind, mode, zero, scale, None, float(metric_spacing))
        if mode == "cumulative":
            return cls(kind, mode, centre, scale, None, float(metric_spacing))
        return cls(kind, mode, zero, scale, centre, float(metric_spacing))

    @classmethod
    def from_action_space(cls, space: ActionSpace, mode: str = "delta") -> "ActionNormaliser":
        """The `std` normaliser of an action space's statistics (what a checkpoint's `action_space` holds)."""
        return cls("std", mode, space.mean, space.std)

    @property
    def dim(self) -> int:
        return len(self.loc)

    @property
    def convention(self) -> str:
        """The raw convention this normaliser's input is in: `frame0_delta` for NWM's deltas, else `mode`."""
        return "frame0_delta" if self.kind == "nwm" and self.mode == "delta" else self.mode

    @property
    def is_affine(self) -> bool:
        """True when every row is normalised alike, i.e. `(a - mean) / std` per dimension."""
        return self.first_loc is None

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-dimension mean of the affine form; ValueError for NWM's deltas (row 0 differs)."""
        self._check_affine()
        return self.loc

    @property
    def std(self) -> tuple[float, ...]:
        """Per-dimension std of the affine form; ValueError for NWM's deltas (row 0 differs)."""
        self._check_affine()
        return self.scale

    def _check_affine(self) -> None:
        if not self.is_affine:
            raise ValueError(
                f"action normaliser {self.kind!r} ({self.mode}) treats row 0 differently (NWM's delta keeps "
                "normalize_data(0) there): it is not one (mean, std) per dimension; store to_dict() instead"
            )

    def _params(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if a.shape[-1] != self.dim:
            raise ValueError(f"actions: last axis {a.shape[-1]} but the normaliser has dimension {self.dim}")
        loc = torch.tensor(self.loc, dtype=a.dtype, device=a.device).expand(a.shape).clone()
        if self.first_loc is not None:
            if a.ndim < 2:
                raise ValueError(f"actions: NWM delta normalisation needs rows (..., n, D), got {tuple(a.shape)}")
            loc[..., 0, :] = torch.tensor(self.first_loc, dtype=a.dtype, device=a.device)
        return loc, torch.tensor(self.scale, dtype=a.dtype, device=a.device)

    def normalise(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Clip actions `(..., n, D)` (in `convention`) -> normalised `(..., n, D)`; numpy in -> numpy out."""
        a, was_numpy = _torch(actions, None)
        a = a if a.is_floating_point() else a.double()
        loc, scale = self._params(a)
        return _back((a - loc) / scale, was_numpy)

    def denormalise(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Inverse of `normalise`."""
        a, was_numpy = _torch(actions, None)
        a = a if a.is_floating_point() else a.double()
        loc, scale = self._params(a)
        return _back(a * scale + loc, was_numpy)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("loc", "scale", "first_loc"):
            d[k] = None if d[k] is None else list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionNormaliser":
        try:
            return cls(
                kind=d["kind"],
                mode=d["mode"],
                loc=tuple(d["loc"]),
                scale=tuple(d["scale"]),
                first_loc=None if d.get("first_loc") is None else tuple(d["first_loc"]),
                metric_spacing=d.get("metric_spacing"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"action normaliser: malformed dict ({exc!r}): {d}") from exc
