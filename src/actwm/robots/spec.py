"""Robot descriptions for KVAF rendering: which file, which end-effector link, where the dataset keeps the joints.

A `RobotSpec` names a URDF or SDF (absolute, or relative to `pybullet_data`), the end-effector link, the base
pose, a schematic two-finger gripper in the end-effector frame, and how a dataset's `observation.state`
columns map to arm joints and gripper opening. `ROBOTS` holds the presets; `manip` is actwm's simulated arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pybullet_data


@dataclass(frozen=True)
class GripperSpec:
    """A two-finger gripper drawn in the end-effector frame (metres).

    The defaults are the manip gripper (wsg50 on the iiwa flange): finger pivots 0.089 m below the flange,
    finger-tip link origins at x = +-0.02 (closed) / +-0.06 (open), z ~0.225 (measured with pybullet).

    Attributes:
        palm: palm centre in the end-effector frame (the stem is drawn from the end-effector origin to it).
        spread_axis: end-effector axis (0 x, 1 y, 2 z) the fingers open along.
        depth_axis: end-effector axis pointing from the palm to the finger tips.
        palm_half: half width of the palm bar along `spread_axis`.
        tip_depth: finger-tip distance from the end-effector origin along `depth_axis`.
        tip_half_closed, tip_half_open: half separation of the tips at opening 0 (closed) and 1 (open).
    """

    palm: tuple[float, float, float] = (0.0, 0.024, 0.089)
    spread_axis: int = 0
    depth_axis: int = 2
    palm_half: float = 0.02
    tip_depth: float = 0.225
    tip_half_closed: float = 0.02
    tip_half_open: float = 0.06

    def __post_init__(self) -> None:
        if self.spread_axis == self.depth_axis or {self.spread_axis, self.depth_axis} - {0, 1, 2}:
            raise ValueError(f"GripperSpec: spread_axis and depth_axis must be distinct axes in 0..2, got {self}")
        if not 0 <= self.tip_half_closed <= self.tip_half_open or self.palm_half < 0:
            raise ValueError(f"GripperSpec: need 0 <= tip_half_closed <= tip_half_open and palm_half >= 0, got {self}")


@dataclass(frozen=True)
class RobotSpec:
    """One serial arm.

    Attributes:
        name: preset name.
        path: URDF or SDF file; relative paths are looked up in `pybullet_data`.
        ee_link: name of the end-effector link (its frame origin is the `ee` landmark).
        base_position, base_orientation: base link frame (URDF / SDF frame, not the inertial one) in the world
            (xyzw quaternion).
        body_index: which model of an SDF holds the arm.
        joint_columns: `observation.state` names of the arm joints (base to end-effector, URDF order).
        gripper_columns, gripper_weights, gripper_bias: opening in [0, 1] = clip(bias + sum(w * state[col])).
        ee_pose_columns: state names of the end-effector pose (x, y, z, roll, pitch, yaw) for action replay.
        gripper: the schematic gripper, or None to draw none.
    """

    name: str
    path: str
    ee_link: str
    base_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    body_index: int = 0
    joint_columns: tuple[str, ...] = ()
    gripper_columns: tuple[str, ...] = ()
    gripper_weights: tuple[float, ...] = ()
    gripper_bias: float = 0.0
    ee_pose_columns: tuple[str, ...] = ()
    gripper: GripperSpec | None = field(default_factory=GripperSpec)

    def __post_init__(self) -> None:
        if len(self.gripper_columns) != len(self.gripper_weights):
            raise ValueError(f"RobotSpec {self.name}: gripper_columns and gripper_weights differ in length")
        if self.ee_pose_columns and len(self.ee_pose_columns) != 6:
            raise ValueError(f"RobotSpec {self.name}: ee_pose_columns must name x, y, z, roll, pitch, yaw")

    def resolved_path(self) -> Path:
        """The robot file as an absolute path; FileNotFoundError naming it when absent."""
        path = Path(self.path)
        if not path.is_absolute():
            path = Path(pybullet_data.getDataPath()) / path
        if not path.is_file():
            raise FileNotFoundError(f"robot {self.name}: {path}: no such URDF/SDF file")
        return path

    def with_ee_link(self, ee_link: str | None) -> "RobotSpec":
        """This spec with another end-effector link (None keeps the preset's)."""
        return self if ee_link is None else replace(self, ee_link=ee_link)


_MANIP_FINGER_OPEN = 0.3  # actwm.sim.manip.FINGER_OPEN: finger joints at -0.3 / +0.3 rad when open

ROBOTS: dict[str, RobotSpec] = {
    "manip": RobotSpec(
        name="manip",
        path="kuka_iiwa/kuka_with_gripper2.sdf",
        ee_link="lbr_iiwa_link_7",  # the flange: pybullet link 6, as actwm.sim.manip.EE_LINK
        # the sim puts the base's inertial frame at the origin; the base link frame sits 0.1 / -0.07 m from it
        base_position=(0.1, 0.0, -0.07),
        joint_columns=tuple(f"q{i}" for i in range(7)),
        gripper_columns=("finger_left", "finger_right"),
        gripper_weights=(-0.5 / _MANIP_FINGER_OPEN, 0.5 / _MANIP_FINGER_OPEN),
        ee_pose_columns=("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw"),
    ),
}


def robot_spec(name: str) -> RobotSpec:
    """The preset `name`; ValueError listing the presets when unknown."""
    if name not in ROBOTS:
        raise ValueError(f"unknown robot {name!r}; presets: {', '.join(sorted(ROBOTS))}")
    return ROBOTS[name]
