"""The base policy: goal-to-view template matching with OpenCV, no world model.

It finds the goal image's centre in the current view (`cv2.matchTemplate`, normalised cross-correlation
over a few scales), turns towards it and walks forward; when the goal is not in view it scans by turning
left, and after a full turn without a match walks forward to see elsewhere. As a proposer it returns its
own plan first, then structured alternatives ("turn k times, then walk") and random plans; without a
world model the agent follows row 0, with one the world model revises among all rows (World-In-World's
use of its base VLM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from actwm.planning.interface import Observation, Vocabulary
from actwm.planning.proposers import _Base


@dataclass(frozen=True)
class Match:
    """Where the goal's centre crop appears in the view: confidence, horizontal offset (px), scale."""

    score: float
    dx: float
    scale: float


def match_goal(view: np.ndarray, goal: np.ndarray, scales: tuple[float, ...] = (0.7, 0.85, 1.0, 1.2, 1.4)) -> Match:
    """Locate the centre half of `goal` `(H, W, 3)` uint8 in `view` `(H, W, 3)` uint8.

    Returns the best normalised cross-correlation over `scales`, the match centre's horizontal offset from
    the view's centre in pixels (positive: to the right), and the scale (> 1: the goal content looks bigger).
    """
    h, w = view.shape[:2]
    crop = goal[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2]
    best = Match(-1.0, 0.0, 1.0)
    for s in scales:
        tw, th = int(round(crop.shape[1] * s)), int(round(crop.shape[0] * s))
        if tw >= w or th >= h or tw < 8 or th < 8:
            continue
        tmpl = cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA)
        res = cv2.matchTemplate(view, tmpl, cv2.TM_CCOEFF_NORMED)
        _, score, _, loc = cv2.minMaxLoc(res)
        if score > best.score:
            best = Match(float(score), loc[0] + tw / 2 - w / 2, s)
    return best


class TemplateMatchPolicy(_Base):
    """The base policy (discrete nav vocabulary). `fov_deg`: the camera's horizontal field of view.

    Args:
        min_score: match confidence below which the goal counts as not in view.
        scan_turns: turns without a match before walking forward (16 = a full turn at 22.5 degrees).
    """

    name = "base"

    def __init__(self, fov_deg: float = 75.0, min_score: float = 0.55, scan_turns: int = 16) -> None:
        super().__init__()
        self.fov_deg, self.min_score, self.scan_turns = fov_deg, min_score, scan_turns
        self._scanned, self._scanning = 0, False

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        if vocabulary.kind != "discrete" or vocabulary.motion_space != "nav3":
            raise ValueError(f"proposer 'base' needs the discrete nav vocabulary, got {vocabulary.name!r}")
        super().reset(vocabulary, rng)
        self._scanned, self._scanning = 0, False
        self._fwd, self._left, self._right = (vocabulary.primitives.index(n) for n in ("forward", "left", "right"))

    def px_per_turn(self, width: int) -> float:
        focal = 0.5 * width / math.tan(math.radians(self.fov_deg) / 2)
        return focal * math.tan(abs(self.vocab.motions[self._left][2]))

    def preferred(self, observation: Observation, horizon: int) -> np.ndarray:
        """The base policy's own plan `(L,)`."""
        if observation.goal is None:
            raise ValueError("proposer 'base' needs a goal image in the observation")
        m = match_goal(observation.rgb, observation.goal)
        if m.score < self.min_score:
            if self._scanned >= self.scan_turns:
                self._scanned = 0
                return np.full(horizon, self._fwd)
            return np.full(horizon, self._left)
        self._scanned = 0
        turns = int(np.clip(round(m.dx / self.px_per_turn(observation.rgb.shape[1])), -horizon, horizon))
        turn = self._right if turns > 0 else self._left
        return np.array([turn] * abs(turns) + [self._fwd] * (horizon - abs(turns)), dtype=np.int64)

    def macros(self, horizon: int) -> list[np.ndarray]:
        """ "Turn k times, then walk" for both directions and k = 0..L."""
        out = []
        for k in range(horizon + 1):
            for turn in (self._left, self._right):
                out.append(np.array([turn] * k + [self._fwd] * (horizon - k), dtype=np.int64))
        return out

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        first = self.preferred(observation, horizon)
        self._scanning = bool(np.all(first == self._left))
        rows, seen = [first], {first.tobytes()}
        for plan in self.macros(horizon):
            if len(rows) >= count:
                break
            if plan.tobytes() not in seen:
                rows.append(plan)
                seen.add(plan.tobytes())
        if len(rows) < count:
            rows.extend(self._uniform(count - len(rows), horizon))
        return np.stack(rows[:count])

    def advance(self, executed: int) -> None:
        if self._scanning:
            self._scanned += executed
