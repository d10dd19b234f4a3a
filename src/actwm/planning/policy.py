"""ImageNav base policies (no world model) and the per-task registry behind `--proposer base`.

- `PoseSearchPolicy` (ImageNav's registered base policy): scans once in place, estimates where the goal
  image was taken (`actwm.planning.nav_perception`: pop-up depth of the goal image matched against a
  panorama of its own views), walks there by odometry, checks on arrival and stops. A world model revises it
  by choosing among the paths to its goal hypotheses.
- `TemplateMatchPolicy` (the earlier one; the demo's controllability study draws its diverse plans): finds
  the goal image's centre in the current view (`cv2.matchTemplate`, normalised cross-correlation over a few
  scales), turns towards it and walks forward until the goal's content looks as big as in the goal image, then
  stops; when the goal is not in view it scans by turning left, and after a full turn without a match faces
  the best-matching heading it saw and walks on. As a proposer it returns its own plan first, then structured
  alternatives (turns in place, walks, side steps, steps back) and random plans.

Without a world model the agent follows row 0; with one the world model revises among the rows
(World-In-World's use of its base VLM).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from actwm.geometry import se2_compose, wrap_angle
from actwm.planning.interface import FORWARD_M, STOP, TURN_RAD, Observation, Vocabulary
from actwm.planning.nav_perception import CameraRig, Panorama, PoseEstimate, estimate_poses, floor_palette
from actwm.planning.proposers import _Base
from actwm.planning.tasks.imagenav import integrate_plan, oracle_plan
from actwm.sim.nav import NavConfig


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
        scan_turns: turns in a full scan (16 = a full turn at 22.5 degrees).
        approach_scale: walk towards the centred goal while its content matches at a smaller scale than this.
        scales: template scales tried by `match_goal`.
    """

    name = "base"

    def __init__(
        self,
        fov_deg: float = 75.0,
        min_score: float = 0.55,
        scan_turns: int = 16,
        approach_scale: float = 0.92,
        scales: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3),
    ) -> None:
        super().__init__()
        self.fov_deg, self.min_score, self.scan_turns = fov_deg, min_score, scan_turns
        self.approach_scale, self.scales = approach_scale, scales
        self._seen: list[float] = []
        self._scanning = False

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        if vocabulary.kind != "discrete" or vocabulary.motion_space != "nav3":
            raise ValueError(f"proposer 'base' needs the discrete nav vocabulary, got {vocabulary.name!r}")
        super().reset(vocabulary, rng)
        self._seen, self._scanning = [], False
        self._fwd, self._left, self._right = (vocabulary.primitives.index(n) for n in ("forward", "left", "right"))

    def px_per_turn(self, width: int) -> float:
        focal = 0.5 * width / math.tan(math.radians(self.fov_deg) / 2)
        return focal * math.tan(abs(self.vocab.motions[self._left][2]))

    def _plan(self, actions: list[int], horizon: int) -> np.ndarray:
        """`actions` truncated / padded with "stop" to `(L,)` (trailing stops are padding: the loop executes a
        plan up to its first stop, and a plan that starts with stop is the decision to stop)."""
        return np.array((actions + [STOP] * horizon)[:horizon], dtype=np.int64)

    def preferred(self, observation: Observation, horizon: int) -> np.ndarray:
        """The base policy's own plan `(L,)`: a short move, padded with stop.

        1. Scan: while the goal is not in view, turn left, remembering each heading's match; after a full
           turn, face the best-matching heading seen and walk towards it.
        2. Servo: with the goal in view, turn to centre it; walk forward while its content looks smaller
           than in the goal image (scale below `approach_scale`), else stop (a plan that starts with stop).
        """
        if observation.goal is None:
            raise ValueError("proposer 'base' needs a goal image in the observation")
        m = match_goal(observation.rgb, observation.goal, scales=self.scales)
        self._scanning = m.score < self.min_score
        if self._scanning:
            self._seen.append(m.score)
            if len(self._seen) > self.scan_turns:  # a full turn without a match: face the best heading seen
                best = int(np.argmax(self._seen[: self.scan_turns]))
                back = (len(self._seen) - 1 - best) % self.scan_turns  # left turns since the best view
                self._seen = []
                turns = (
                    [self._right] * back if back <= self.scan_turns // 2 else [self._left] * (self.scan_turns - back)
                )
                return self._plan(turns + [self._fwd, self._fwd], horizon)
            return self._plan([self._left], horizon)
        self._seen = []
        turns = int(np.clip(round(m.dx / self.px_per_turn(observation.rgb.shape[1])), -3, 3))
        if turns:
            return self._plan([self._right if turns > 0 else self._left] * abs(turns), horizon)
        if m.scale < self.approach_scale:
            return self._plan([self._fwd], horizon)
        return self._plan([], horizon)

    def macros(self, horizon: int) -> list[np.ndarray]:
        """Structured alternatives, mixed so that any prefix holds each kind, all within L actions: stay;
        turn k in place (every heading); walk n; side steps (turn a, walk n, turn back a: a new position at
        the same heading); steps back (turn around, walk n, turn around)."""
        left, right, fwd = self._left, self._right, self._fwd
        turns = [[t] * k for k in range(1, self.scan_turns // 2 + 1) for t in (left, right)][:-1]  # 8 once
        walks = [[fwd] * n for n in (2, 4, 1, 3, 6)]
        sides = [
            [t] * a + [fwd] * n + [back] * a
            for n in (2, 4, 1, 3, 6)
            for a in (1, 2, 3, 4)
            for t, back in ((left, right), (right, left))
        ]
        half = self.scan_turns // 2  # turn around, walk n, turn back: a step backwards (long horizons only)
        backs = [[left] * half + [fwd] * n + [left] * half for n in (2, 4, 1, 3)]
        ordered: list[list[int]] = [[]]
        for group in itertools.zip_longest(turns, walks, sides, sides[1:], backs, fillvalue=None):
            ordered += [g for g in group if g is not None]
        unique = {tuple(a): a for a in ordered if len(a) <= horizon}
        return [self._plan(a, horizon) for a in unique.values()]

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        return self._rows([self.preferred(observation, horizon), *self.macros(horizon)], count, horizon)

    def _rows(self, plans: list[np.ndarray], count: int, horizon: int, fill: bool = True) -> np.ndarray:
        """`(count, L)`: `plans` without repeats, in order, then random plans (`fill`; else fewer rows)."""
        rows, seen = [], set()
        for plan in plans:
            if plan.tobytes() not in seen:
                rows.append(plan)
                seen.add(plan.tobytes())
        if fill and len(rows) < count:
            rows.extend(self._uniform(count - len(rows), horizon))
        return np.stack(rows[:count])

    def advance(self, executed: int) -> None:
        pass


#: `PoseSearchPolicy`'s arrival check: the largest local-search cost that means "at the goal", calibrated on
#: training scenes 0..23 at 64 px (`actwm.planning.calibrate.calibrate_check`): <= 5% of views 0.6-2 m away
#: pass (4.9%), 72% of views within 0.3 m do.
DEFAULT_CHECK_COST = 0.18


class PoseSearchPolicy(TemplateMatchPolicy):
    """The ImageNav base policy: find where the goal image was taken, walk there by odometry, check, stop.

    1. Scan: turn left in place, adding each view to a panorama (`nav_perception.Panorama`), until
       `scan_views` headings are seen (14: a full circle with the 75-degree field of view).
    2. Estimate: the goal image's pose in the panorama's frame (`nav_perception.estimate_poses`: pop-up
       depth of the goal image warped into the panorama, yaw on the 22.5-degree lattice); the
       `hypotheses` best distinct poses are kept.
    3. Go to the best: turn to face it, walk, turn to its heading (`oracle_plan` on the estimate, tracked by
       odometry: the agent's own executed actions, `Observation.extras["actions"]`, else its own row 0).
    4. Check on arrival: the goal searched again within `check_radius` of the current view alone; a cost
       at most `check_cost` (calibrated on training scenes, `DEFAULT_CHECK_COST`)
       means "here": step to the correction once if it is off, else stop (row 0 starts with stop). A
       failed check moves on to the next hypothesis; with none left, the best-checked one is the last stop.
    Its alternatives for a world model (`propose`) are the paths to every hypothesis and to poses one step or
    turn off each, and with `wide` also `TemplateMatchPolicy.macros` and random plans.

    Args:
        nav: the camera (field of view, height, pitch, supersample) the agent knows it has.
        radius: the farthest goal position searched (m).
        wide: after the scan, also propose the macros and random plans (a world model may pick them; they
            do not re-target the policy). Dev: seed 2 base + oracle 0.65 without, seed 1 0.83 either way.
    """

    name = "base"

    def __init__(
        self,
        nav: NavConfig | None = None,
        radius: float = 4.5,
        scan_views: int = 14,
        hypotheses: int = 3,
        check_radius: float = 1.5,
        check_cost: float = DEFAULT_CHECK_COST,
        wide: bool = True,
    ) -> None:
        super().__init__(fov_deg=(nav or NavConfig()).fov_deg)
        if not (1 <= scan_views <= 16 and hypotheses >= 1 and radius > 0 and check_radius > 0):
            raise ValueError(
                f"PoseSearchPolicy needs 1 <= scan_views <= 16, hypotheses >= 1, radius and check_radius > 0, "
                f"got {scan_views}, {hypotheses}, {radius}, {check_radius}"
            )
        self.nav, self.radius, self.scan_views, self.hypotheses = nav or NavConfig(), radius, scan_views, hypotheses
        self.check_radius, self.check_cost, self.wide = check_radius, check_cost, wide

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        super().reset(vocabulary, rng)
        self._actions: list[int] = []  # executed actions (odometry), when the task does not list them
        self._last: np.ndarray | None = None
        self._pano: Panorama | None = None
        self._spot = np.zeros(3)  # odometry pose the panorama was taken around
        self._hyps: list[np.ndarray] | None = None  # goal hypotheses in the odometry frame, next first
        self._checked: list[tuple[float, np.ndarray]] = []  # (check cost, pose) of visited hypotheses
        self._corrected = False
        self._pose = np.zeros(3)  # odometry at the last decision
        self._expected: np.ndarray | None = None  # odometry after the executed part of the own plan
        self._targets: list[tuple[list[int], np.ndarray]] = []  # (moves, target) of the last proposals
        self._decided_at = 0  # actions executed before the last decision
        self.estimates: list[PoseEstimate] = []

    def odometry(self, observation: Observation) -> np.ndarray:
        """The agent's pose `(3,)` relative to its episode start, integrated from its executed actions."""
        actions = observation.extras.get("actions")
        actions = list(self._actions if actions is None else actions)
        return integrate_plan(np.zeros(3), [a for a in actions if a != STOP])[-1]

    def preferred(self, observation: Observation, horizon: int) -> np.ndarray:
        """The plan `(L,)`: scan (one left turn), else the path to the current hypothesis, else stop."""
        if observation.goal is None:
            raise ValueError("proposer 'base' needs a goal image in the observation")
        pose = self.odometry(observation)
        if self._hyps is not None and self._expected is not None and np.abs(pose - self._expected).max() > 1e-6:
            self._follow(observation, pose)  # a world model chose another plan
        self._pose = pose
        if self._hyps is None:
            if self._scan(observation, pose):
                return self._plan([self._left], horizon)
        while True:
            target = self._hyps[0] if self._hyps else min(self._checked, key=lambda c: c[0])[1]
            path = self._path(pose, target)
            if path or not self._hyps:
                return self._plan(path, horizon)
            check = estimate_poses(
                self._local(observation),
                observation.goal,
                radius=self.check_radius,
                turns=(-2, -1, 0, 1, 2),
                palette=self._palette,
            )[0]
            if check.cost <= self.check_cost:
                if self._corrected or not self._path(np.zeros(3), check.pose):
                    return self._plan([], horizon)
                self._corrected, self._hyps[0] = True, se2_compose(pose, check.pose)
                continue
            self._checked.append((check.cost, pose))
            self._hyps.pop(0)
            self._corrected = False

    def _follow(self, observation: Observation, pose: np.ndarray) -> None:
        """A world model executed another proposal: the target that plan leads to (a hypothesis or a pose
        a step off one) becomes the current one. Needs the task's action list (`extras["actions"]`)."""
        actions = observation.extras.get("actions")
        if actions is None:
            return
        done = [int(a) for a in actions[self._decided_at :] if int(a) != STOP]
        for moves, target in self._targets:
            if moves[: len(done)] == done:
                self._hyps.insert(0, target)
                self._corrected = True
                return

    def _scan(self, observation: Observation, pose: np.ndarray) -> bool:
        """Add the view to the panorama; True while scanning goes on, else the hypotheses are set."""
        if self._pano is None or np.hypot(*(pose[:2] - self._spot[:2])) > 1e-6:  # (re)start where the agent is
            self._pano, self._spot = Panorama(CameraRig(observation.rgb.shape[0], self.nav)), pose.copy()
        turns = int(round(float(wrap_angle(pose[2] - self._spot[2])) / TURN_RAD)) % 16
        self._pano.add(observation.rgb, turns)
        if len(self._pano.views) < self.scan_views:
            return True
        self._palette = floor_palette([*self._pano.views, observation.goal])
        self.estimates = estimate_poses(self._pano, observation.goal, radius=self.radius, palette=self._palette)
        self._hyps = [se2_compose(self._spot, e.pose) for e in self.estimates[: self.hypotheses]]
        return False

    def _local(self, observation: Observation) -> Panorama:
        pano = Panorama(self._pano.rig)
        pano.add(observation.rgb, 0)
        return pano

    def _path(self, pose: np.ndarray, target: np.ndarray) -> list[int]:
        """Primitive indices from `pose` to `target`: only the final turns once within 0.2 m."""
        names = list(self.vocab.primitives)
        if np.hypot(*(target[:2] - pose[:2])) < 0.2:
            target = np.array([pose[0], pose[1], target[2]])
        return [names.index(a) for a in oracle_plan(pose, target)]

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        """`(M', L)` plans, M' <= count: while scanning only the scan's next turn (imagining the goal cannot
        value a look around); then row 0 and the complete paths (within L) to every hypothesis and to poses
        one step or turn off each (imagination chooses which endpoint looks like the goal), and with `wide`
        the macros and random plans up to `count`."""
        own = self.preferred(observation, horizon)
        self._last = own
        if self._hyps is None:
            return own[None]
        targets = [*self._hyps, *(pose for _, pose in self._checked)]
        nudges = [(0.0, 0.0, 0.0), (FORWARD_M, 0, 0), (-FORWARD_M, 0, 0), (0, FORWARD_M, 0), (0, -FORWARD_M, 0)]
        nudges += [(0, 0, TURN_RAD), (0, 0, -TURN_RAD)]
        ends = [se2_compose(t, np.array(n)) for t in targets for n in nudges]
        paths = [self._path(self._pose, e) for e in ends]
        self._targets = [(p, e) for p, e in zip(paths, ends) if len(p) <= horizon]  # for `_follow`
        actions = observation.extras.get("actions")
        self._decided_at = len(self._actions if actions is None else actions)
        rows = [own, *(self._plan(p, horizon) for p, _ in self._targets)]
        if self.wide:
            return self._rows([*rows, *self.macros(horizon)], count, horizon)
        return self._rows(rows, count, horizon, fill=False)

    def advance(self, executed: int) -> None:
        """Odometry's expectation after `executed` actions of its own plan (row 0); without the task's action
        list, odometry assumes exactly that."""
        if self._last is not None:
            done = [int(a) for a in self._last[:executed]]
            done = done[: done.index(STOP)] if STOP in done else done
            self._actions += done
            self._expected = integrate_plan(self._pose, done)[-1]


#: The proposer "base" of each task: task name -> factory() -> a fresh proposer (the task's base policy, used
#: identically with and without a world model). A task registers its own from its module with
#: `register_base_policy`; `actwm plan --proposer base` looks it up with `base_policy`.
BASE_POLICIES: dict[str, Callable[[], Any]] = {}


def register_base_policy(task: str, factory: Callable[[], Any]) -> None:
    """Make `factory()` the base policy (proposer "base") of `task` (replaces an earlier registration)."""
    if not task or not callable(factory):
        raise ValueError(f"register_base_policy needs a task name and a callable factory, got {task!r}, {factory!r}")
    BASE_POLICIES[task] = factory


def base_policy(task: str) -> Any:
    """A fresh base policy for `task`; a task without its own gets the ImageNav policy (which refuses, at
    `reset`, any vocabulary but the discrete nav one)."""
    return BASE_POLICIES.get(task, PoseSearchPolicy)()


register_base_policy("imagenav", PoseSearchPolicy)
