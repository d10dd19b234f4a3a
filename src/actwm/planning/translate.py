"""The unified action API: agent plans -> what each kind of world model consumes (World-In-World, chapter 3).

Three control modalities:

- low-level actions (`model_actions`): each agent action becomes `n` model frames of equal sub-motions in
  the model's own action space (a model trained at 0.08 m per frame imagines "forward 0.25 m" over 4
  frames of 0.0625 m); the frames that close each agent action are `closing_frames(L, n)`. `n` is one
  number for the whole plan (so M candidates batch into one rollout), chosen so that no sub-motion of
  any action the vocabulary allows exceeds the model's per-frame step (`frames_per_action`).
- camera trajectories (`camera_trajectory`): poses (x, y, yaw) after each agent action, integrated step
  by step with `actwm.geometry.se2_compose` (x forward, y left, yaw counter-clockwise).
- text prompts (`text_prompt`): one sentence per primitive from World-In-World's templates, joined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from actwm.geometry import se2_compose, wrap_angle
from actwm.planning.interface import Vocabulary


@dataclass(frozen=True)
class FrameStep:
    """The largest motion a model covers per frame of its training data.

    Attributes:
        translation: metres per frame (nav3: planar; ee7: per axis).
        rotation: radians per frame.
    """

    translation: float
    rotation: float

    def __post_init__(self) -> None:
        if not (self.translation > 0 and self.rotation > 0):
            raise ValueError(f"FrameStep needs translation > 0 and rotation > 0, got {self}")


def frames_per_action(vocabulary: Vocabulary, step: FrameStep | None) -> int:
    """Model frames per agent action: enough that every action the vocabulary allows fits `step` per frame.

    `step=None` means the model runs at the agent's own rate (1 frame per action).
    """
    if step is None:
        return 1
    if vocabulary.kind == "discrete":
        motions = np.abs(np.asarray(vocabulary.motions, dtype=np.float64))
    else:
        motions = np.maximum(np.abs(np.asarray(vocabulary.low)), np.abs(np.asarray(vocabulary.high)))[None]
    if vocabulary.motion_space == "nav3":
        trans, rot = np.hypot(motions[:, 0], motions[:, 1]), np.abs(motions[:, 2])
    else:  # ee7: per-axis translation, per-axis rotation; the gripper is absolute
        trans, rot = motions[:, :3].max(axis=1), motions[:, 3:6].max(axis=1)
    need = np.maximum(np.ceil(trans / step.translation - 1e-9), np.ceil(rot / step.rotation - 1e-9))
    return max(1, int(need.max()))


def split_nav3(motions: np.ndarray, n: int) -> np.ndarray:
    """Planar motions `(..., 3)` -> `(..., n, 3)` equal sub-motions whose n-fold composition is the motion.

    A constant twist (velocity (vx, vy), turn rate w over unit time) reaches the motion exactly; each
    sub-motion is that twist over 1/n of the time: yaw `w/n`, translation `V(w/n) (vx, vy) / n`.
    """
    m = np.asarray(motions, dtype=np.float64)
    theta = wrap_angle(m[..., 2])
    vx, vy = _twist_velocity(m[..., 0], m[..., 1], theta)
    sub_theta = theta / n
    a, b = _v_terms(sub_theta)
    sx = (a * vx - b * vy) / n
    sy = (b * vx + a * vy) / n
    sub = np.stack([sx, sy, sub_theta], -1)
    return np.repeat(sub[..., None, :], n, axis=-2)


def _v_terms(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin(t)/t and (1 - cos(t))/t, stable near 0."""
    t = np.asarray(theta, dtype=np.float64)
    small = np.abs(t) < 1e-6
    safe = np.where(small, 1.0, t)
    a = np.where(small, 1.0 - t**2 / 6, np.sin(safe) / safe)
    b = np.where(small, t / 2, (1 - np.cos(safe)) / safe)
    return a, b


def _twist_velocity(dx: np.ndarray, dy: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert `(dx, dy) = V(theta) (vx, vy)` with `V = [[a, -b], [b, a]]`."""
    a, b = _v_terms(theta)
    det = a * a + b * b
    return (a * dx + b * dy) / det, (-b * dx + a * dy) / det


def model_actions(vocabulary: Vocabulary, plans: np.ndarray, n: int) -> np.ndarray:
    """Agent plans -> raw model actions `(M, 1 + L*n, D)` in the dataset convention of `actwm.rollout`.

    Row t takes model frame t to t+1 (nav3: motion in the robot frame of frame t; ee7: end-effector delta
    with an absolute gripper command); the last row is zeros. Agent action l spans rows `l*n .. l*n + n-1`.
    """
    motions = vocabulary.motions_of(plans)  # (M, L, D)
    m, length, d = motions.shape
    if vocabulary.motion_space == "nav3":
        sub = split_nav3(motions, n)  # (M, L, n, 3)
    else:
        sub = np.repeat(motions[:, :, None, :] / n, n, axis=2)
        sub[..., 6:] = motions[:, :, None, 6:]  # the gripper command is absolute, not a delta
    rows = sub.reshape(m, length * n, d)
    return np.concatenate([rows, np.zeros((m, 1, d))], axis=1)


def closing_frames(horizon: int, n: int) -> np.ndarray:
    """Indices `(L,)` into a rollout of `1 + L*n` frames: the frame that closes each agent action."""
    return n * np.arange(1, horizon + 1)


def camera_trajectory(vocabulary: Vocabulary, plans: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """nav plans -> poses `(M, L, 3)` (x, y, yaw) after each agent action, from `start` `(3,)` (default 0)."""
    if vocabulary.motion_space != "nav3":
        raise ValueError(f"camera trajectories need a nav vocabulary, got {vocabulary.name!r}")
    motions = vocabulary.motions_of(plans)
    pose = np.broadcast_to(np.zeros(3) if start is None else np.asarray(start, np.float64), motions[:, 0].shape)
    out = []
    for step in range(motions.shape[1]):
        pose = se2_compose(pose, motions[:, step])
        out.append(pose)
    return np.stack(out, axis=1)


#: World-In-World's prompt templates for the navigation primitives.
TEXT_TEMPLATES = {
    "forward": "The camera moves forward by {m:.2f}m.",
    "left": "The camera rotates left by {deg:.1f}°.",
    "right": "The camera rotates right by {deg:.1f}°.",
    "stop": "The camera stays still.",
}


def text_prompt(vocabulary: Vocabulary, plan: np.ndarray) -> str:
    """One discrete nav plan `(L,)` -> the concatenated prompt, e.g. "The camera moves forward by 0.25m. ..."."""
    if vocabulary.kind != "discrete" or vocabulary.motion_space != "nav3":
        raise ValueError(f"text prompts are defined for the discrete nav vocabulary, got {vocabulary.name!r}")
    idx = vocabulary.validate(np.asarray(plan)[None])[0]
    parts = []
    for i in idx:
        name = vocabulary.primitives[i]
        dx, _, dyaw = vocabulary.motions[i]
        parts.append(TEXT_TEMPLATES[name].format(m=dx, deg=math.degrees(abs(dyaw))))
    return " ".join(parts)
