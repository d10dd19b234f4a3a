"""The push base policy, its stop rule and the frame-read scorer: push-to-target without privileged state.

Everything here sees only images (`actwm.planning.push_perception`), the robot's own end-effector pose
(proprioception, `Observation.extras["ee"]`) and the camera calibration; never the simulator's state.

- `PushPolicy` (proposer "base" of task "push"): reads block and target from the current frame, lifts,
  travels above a point behind the block on the far side from the target, descends, and pushes along the
  block-to-target line in short strokes, re-reading the frame at every decision. As a proposer it returns
  its own plan first, then variants (push direction turned by a few degrees, contact point shifted
  sideways, a shorter or longer stroke, and "hold still"): without a world model the agent follows row 0;
  with one, the world model shows which push lands (World-In-World's use of its base policy).
- `PushStop`: the agent's stop: the block seen in the current frame lies within `threshold` of the target
  read from the goal image (threshold calibrated on training scenes, `calibrate_push_stop`).
- `BlockToTarget`: scores imagined futures by the block-to-target distance read from each plan's last frame.

All three share one `PushPerception` (the episode's `BlockReader`, learnt from its first frame and goal).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from actwm.checks import require, require_positive
from actwm.pixels import unit_to_uint8
from actwm.planning.interface import Observation, Vocabulary
from actwm.planning.policy import register_base_policy
from actwm.planning.proposers import _Base
from actwm.planning.push_perception import BlockReader
from actwm.planning.tasks.common import TASK_SCENE_BASE
from actwm.planning.tasks.push import PushOracle

#: Stop radius (m) of the seen block-to-target distance: `calibrate_push_stop(PushTask(), range(24))` at 64 px
#: (training scenes 0..23, 1496 frames; <= 1% of the frames it stops on are outside the 0.03 m tolerance).
DEFAULT_PUSH_STOP = 0.02
#: The policy and the stop trust a reading only when this fraction of the block's area is visible (the arm
#: hides part of the block while it pushes, and the centroid of what is left is biased by centimetres).
VISIBLE = 0.7


class PushPerception:
    """The current episode's `BlockReader`, rebuilt from the first observation (step 0) of each episode."""

    def __init__(self) -> None:
        self.reader: BlockReader | None = None
        self._key: bytes | None = None

    def update(self, obs: Observation) -> BlockReader:
        """The reader for `obs`'s episode (ValueError without goal image, calibration, or a first frame)."""
        if obs.goal is None or "intrinsics" not in obs.extras or "extrinsics" not in obs.extras:
            raise ValueError("push perception needs the goal image and the camera calibration in the observation")
        if obs.step == 0:
            key = hashlib.sha256(obs.rgb.tobytes() + obs.goal.tobytes()).digest()
            if key != self._key:
                self.reader = BlockReader.from_start(
                    obs.rgb, obs.goal, obs.extras["intrinsics"], obs.extras["extrinsics"]
                )
                self._key = key
        if self.reader is None:
            raise ValueError("push perception: the episode's first observation (step 0) was never seen")
        return self.reader


@dataclass(frozen=True)
class PushPolicyConfig:
    """Settings of the push base policy (heights are of the flange; the finger tips are ~0.27 m below).

    Attributes:
        travel_z, push_z: flange height when travelling above the table and when pushing.
        standoff: distance (m) behind the block centre the push starts from.
        contact: flange-to-block-centre distance (m) while in contact (the block ends on the target when the
            flange is this far short of it).
        travel_speed, push_speed: largest step (m) per action when travelling and when pushing.
        retreat: where the flange goes after a stroke (near home, out of the camera's view of the table), so
            the next frame shows the block unoccluded.
        turns_deg, shifts, strokes: the variants proposed around the preferred plan (push-direction turn,
            sideways contact shift in m, stroke-length factor).
    """

    travel_z: float = 0.37
    push_z: float = 0.284
    standoff: float = 0.08
    contact: float = 0.06
    travel_speed: float = 0.04
    push_speed: float = 0.02
    turns_deg: tuple[float, ...] = (0.0, 10.0, -10.0, 20.0, -20.0)
    shifts: tuple[float, ...] = (0.0, 0.01, -0.01)
    strokes: tuple[float, ...] = (1.0, 0.5, 1.5)
    retreat: tuple[float, float, float] = (0.6, 0.0, 0.42)

    def __post_init__(self) -> None:
        require(self.travel_z <= 0.65, self, "travel_z", "<= 0.65 m")
        require(0.28 <= self.push_z < self.travel_z, self, "push_z", f"in [0.28, travel_z = {self.travel_z}) m")
        require_positive(self, "standoff", "contact", "travel_speed", "push_speed")
        require(self.standoff >= self.contact, self, "standoff", f">= contact = {self.contact}")
        for speed in ("travel_speed", "push_speed"):
            require(getattr(self, speed) <= 0.05, self, speed, "<= 0.05 m per action (the ee7 bound)")


@dataclass(frozen=True)
class Variant:
    """One candidate push: direction turned by `turn` rad, contact shifted sideways by `shift` m, stroke x `stroke`."""

    turn: float = 0.0
    shift: float = 0.0
    stroke: float = 1.0


class PushPolicy(_Base):
    """The push base policy (ee7 vocabulary); see the module docstring."""

    name = "push-base"

    def __init__(self, config: PushPolicyConfig | None = None, perception: PushPerception | None = None) -> None:
        super().__init__()
        self.config = config or PushPolicyConfig()
        self.perception = perception or PushPerception()
        self._block: np.ndarray | None = None
        self._looking = False

    def reset(self, vocabulary: Vocabulary, rng: np.random.Generator) -> None:
        if vocabulary.name != "ee7":
            raise ValueError(f"proposer 'base' of task push needs the ee7 vocabulary, got {vocabulary.name!r}")
        super().reset(vocabulary, rng)
        self._block, self._looking = None, False

    def variants(self) -> list[Variant]:
        """Preferred first, then one change at a time, then combinations (deterministic order)."""
        c = self.config
        out = [Variant()]
        out += [Variant(turn=math.radians(t)) for t in c.turns_deg[1:]]
        out += [Variant(shift=s) for s in c.shifts[1:]]
        out += [Variant(stroke=s) for s in c.strokes[1:]]
        out += [
            Variant(math.radians(t), s, k)
            for t in c.turns_deg
            for s in c.shifts
            for k in c.strokes
            if sum((t != 0, s != 0, k != 1.0)) >= 2
        ]
        return out

    def propose(self, observation: Observation, count: int, horizon: int) -> np.ndarray:
        """`(count, horizon, 7)` plans: the preferred push, its variants, then "hold still" and more variants."""
        reader = self.perception.update(observation)
        ee = np.asarray(observation.extras["ee"], dtype=np.float64)[:3]
        seen = reader.locate(observation.rgb, VISIBLE)
        block = self._track(seen, reader.target)
        if seen is not None:
            self._looking = False
        elif self._stroke_done(ee, block, reader.target):
            self._looking = True  # pushed to the end on an old reading: retreat until the block is seen again
        rows: list[np.ndarray] = []
        seen: set[bytes] = set()

        def add(plan: np.ndarray) -> None:
            if plan.tobytes() not in seen:  # variants that coincide over the horizon are imagined once
                rows.append(plan)
                seen.add(plan.tobytes())

        for v in self.variants():
            if len(rows) == 4 and count > 1:
                add(np.zeros((horizon, 7)))  # hold still (after the first variants)
            if len(rows) >= count:
                break
            add(self.plan(ee, block, reader.target, v, horizon))
        for _ in range(4 * count):  # more candidates than distinct variants: random directions and shifts
            if len(rows) >= count:
                break
            v = Variant(self.rng.uniform(-0.6, 0.6), self.rng.uniform(-0.02, 0.02), self.rng.uniform(0.3, 1.8))
            add(self.plan(ee, block, reader.target, v, horizon))
        rows += [rows[i % len(rows)] for i in range(count - len(rows))]  # all alike (e.g. retreating): repeat
        plans = np.stack(rows[:count])
        plans[..., 6] = 1.0  # gripper closed: the fingers push as one
        return plans

    def _track(self, seen: np.ndarray | None, target: np.ndarray) -> np.ndarray:
        """The block position to plan with: the reading when the block is well visible, else the remembered
        one (the arm hides the block as it pushes, so a stroke runs to its end on the last clear reading)."""
        if seen is not None:
            self._block = seen
        return self._block if self._block is not None else target

    def plan(self, ee: np.ndarray, block: np.ndarray, target: np.ndarray, v: Variant, horizon: int) -> np.ndarray:
        """`(horizon, 7)` ee7 actions that carry out push `v` from flange position `ee` (3,), kinematically."""
        c = self.config
        d = np.asarray(target, np.float64) - block
        remaining = float(np.linalg.norm(d))
        if remaining < 1e-6:
            return np.zeros((horizon, 7))
        ang = math.atan2(d[1], d[0]) + v.turn
        line = np.array([math.cos(ang), math.sin(ang)])
        normal = np.array([-line[1], line[0]])
        contact = block + v.shift * normal - c.contact * line  # flange xy when touching the block
        end = contact + v.stroke * remaining * line  # flange xy when the block would be on the target
        pushing = self._in_contact(ee, block, line, normal, v)
        pos, out, done = ee.copy(), np.zeros((horizon, 7)), self._looking
        pushing = pushing and not done
        for i in range(horizon):
            if pushing and float(np.linalg.norm(end - pos[:2])) < 0.005:
                pushing, done = False, True  # stroke done: lift, then retreat out of the camera's way
            if done:
                lifted = pos[2] >= c.travel_z - 0.01
                goal, speed = (np.asarray(c.retreat) if lifted else np.r_[pos[:2], c.travel_z]), c.travel_speed
            elif pushing:
                goal = np.r_[end, c.push_z]
                speed = min(c.push_speed, 0.6 * float(np.linalg.norm(end - pos[:2])) + 0.002)
            else:
                goal, speed = self._approach_waypoint(pos, block, line, normal, v)
            err = goal - pos
            norm = float(np.linalg.norm(err))
            step = err if norm <= speed else err * speed / norm
            step = np.clip(step, -0.05, 0.05)
            out[i, :3] = step
            pos = pos + step
            if not pushing and self._in_contact(pos, block, line, normal, v) and pos[2] <= c.push_z + 0.005:
                pushing = True
        return out

    def _stroke_done(self, ee: np.ndarray, block: np.ndarray, target: np.ndarray) -> bool:
        """The preferred push from `block` has run to its end: the flange is low, at the stroke's end point."""
        d = np.asarray(target, np.float64) - block
        remaining = float(np.linalg.norm(d))
        if remaining < 1e-6:
            return True
        line = d / remaining
        end = block + (remaining - self.config.contact) * line
        return ee[2] <= self.config.push_z + 0.02 and float(np.linalg.norm(ee[:2] - end)) < 0.01

    def _in_contact(self, ee: np.ndarray, block: np.ndarray, line: np.ndarray, normal: np.ndarray, v: Variant) -> bool:
        """The flange is low, behind the block on the push line (within a few cm), ready to push."""
        c = self.config
        rel = ee[:2] - block
        along, across = float(rel @ line), float(rel @ normal - v.shift)
        return ee[2] <= c.push_z + 0.02 and -c.standoff - 0.03 <= along <= -0.01 and abs(across) <= 0.025

    def _approach_waypoint(
        self, pos: np.ndarray, block: np.ndarray, line: np.ndarray, normal: np.ndarray, v: Variant
    ) -> tuple[np.ndarray, float]:
        """The next waypoint of lift -> travel -> descend to the standoff point, and the speed towards it."""
        c = self.config
        start = block + v.shift * normal - c.standoff * line
        above = float(np.linalg.norm(pos[:2] - start)) <= 0.015
        if above:
            return np.r_[start, c.push_z], c.travel_speed
        if pos[2] < c.travel_z - 0.01:
            return np.r_[pos[:2], c.travel_z], c.travel_speed  # lift first: never sweep through the block
        return np.r_[start, c.travel_z], c.travel_speed


class PushStop:
    """The agent's stop for push: the block seen in the current frame is within `threshold` m of the target."""

    is_oracle = False
    checks_every_decision = True  # ee7 has no stop primitive: the loop asks before every decision

    def __init__(self, perception: PushPerception, threshold: float = DEFAULT_PUSH_STOP) -> None:
        if not 0 < threshold < 0.1:
            raise ValueError(f"push stop threshold must be in (0, 0.1) m, got {threshold}")
        self.perception, self.threshold = perception, threshold

    @property
    def name(self) -> str:
        return f"seen-block-to-target<={self.threshold:.4g}m"

    def __call__(self, observation: Observation, task: Any) -> bool:
        return self.perception.update(observation).distance(observation.rgb, VISIBLE) <= self.threshold

    def allows_stay(self, observation: Observation, task: Any) -> bool:
        return self(observation, task)


class BlockToTarget:
    """Scores imagined futures: minus the block-to-target distance (m) read from each plan's last frame.

    A last frame where the arm hides the block (less than `VISIBLE` of it seen) tells nothing: that plan
    scores the distance seen now. `margin` (m) favours row 0 (the base policy's own plan): a variant must
    look that much better to win.
    """

    def __init__(self, perception: PushPerception, margin: float = 0.005) -> None:
        self.perception, self.margin = perception, margin
        self.name = f"block-to-target-last(margin={margin:g})"

    def score(self, observation: Observation, plans: np.ndarray, frames: torch.Tensor) -> np.ndarray:
        """`(M, L, 3, H, W)` frames in [0, 1] -> `(M,)` float64 (higher is better; -1 when the block is unseen)."""
        reader = self.perception.update(observation)
        now = min(reader.distance(observation.rgb, VISIBLE), 1.0)
        last = unit_to_uint8(frames[:, -1])
        seen = [reader.distance(f, VISIBLE) for f in last]
        scores = np.array([-(now if not np.isfinite(d) else min(d, 1.0)) for d in seen], dtype=np.float64)
        scores[0] += self.margin
        return scores


def calibrate_push_stop(task: Any, scenes: range, max_false: float = 0.01) -> dict[str, Any]:
    """The stop radius from TRAINING scenes (`scenes` must lie below the task-scene range): push each scene's
    block with the privileged `PushOracle` (calibration only), pair the seen block-to-target distance of
    every frame with the true one, and return the largest radius whose stops are false (true distance >
    the task's tolerance) in at most `max_false` of the frames it stops on.

    Returns {"threshold", "false_stop_rate", "frames", "scenes"}.
    """
    if scenes.stop > TASK_SCENE_BASE:
        raise ValueError(f"calibration scenes must be training scenes below {TASK_SCENE_BASE}")
    seen, true = [], []
    for scene in scenes:
        ep = task._draw_episode(scene, scene)
        if ep is None:
            continue
        obs, oracle, perception = task.reset(ep), PushOracle(task), PushPerception()
        perception.update(obs)
        while obs.step < task.budget and task.block_distance() > 0.004:
            obs = task.step(oracle())
            seen.append(perception.reader.distance(obs.rgb))
            true.append(task.block_distance())
    seen_a, true_a = np.asarray(seen), np.asarray(true)
    best = {"threshold": None, "false_stop_rate": 0.0, "frames": len(seen), "scenes": len(scenes)}
    for thr in np.arange(0.002, 0.05, 0.001):
        stops = seen_a <= thr
        rate = float((true_a[stops] > task.config.tolerance).mean()) if stops.any() else 0.0
        if rate <= max_false:
            best.update(threshold=round(float(thr), 4), false_stop_rate=rate)
    return best


register_base_policy("push", PushPolicy)
