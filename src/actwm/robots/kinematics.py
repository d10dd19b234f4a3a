"""Batched forward and inverse kinematics of a serial arm through pybullet's own solver (a DIRECT client).

The arm is the chain of movable joints from the base to the end-effector link, in URDF order. `joints` are
the world origins of those joints' child-link frames; `ee` is the end-effector link's frame origin and
orientation. pybullet's `getLinkStates(computeForwardKinematics=True)` gives ~40k configurations/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actwm.robots.spec import RobotSpec
from actwm.sim.bullet import p


@dataclass
class ArmPose:
    """World geometry of one arm over T frames (metres).

    Attributes:
        root: `(T, 3)` base link frame origin.
        joints: `(T, n, 3)` child-link frame origins of the n arm joints.
        ee_pos: `(T, 3)` end-effector frame origin.
        ee_rot: `(T, 3, 3)` end-effector frame axes as columns (world from end-effector).
        opening: `(T,)` gripper opening in [0, 1] (0 closed, 1 open), or None when unknown.
    """

    root: np.ndarray
    joints: np.ndarray
    ee_pos: np.ndarray
    ee_rot: np.ndarray
    opening: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ee_pos)


def _rot(quat: tuple[float, ...]) -> np.ndarray:
    return np.asarray(p.getMatrixFromQuaternion(quat), dtype=np.float64).reshape(3, 3)


class ArmKinematics:
    """Forward / inverse kinematics of `spec`'s arm. Close with `close()` (or use as a context manager)."""

    def __init__(self, spec: RobotSpec) -> None:
        self.spec = spec
        path = spec.resolved_path()
        self.client = p.connect(p.DIRECT)
        try:
            self._load(path)
        except BaseException:
            p.disconnect(self.client)
            raise

    def _load(self, path) -> None:
        c, spec = self.client, self.spec
        if path.suffix.lower() == ".sdf":
            bodies = p.loadSDF(str(path), physicsClientId=c)
            if not 0 <= spec.body_index < len(bodies):
                raise ValueError(f"{path}: has {len(bodies)} models, body_index {spec.body_index} is out of range")
            self.body = bodies[spec.body_index]
        else:
            self.body = p.loadURDF(str(path), useFixedBase=True, physicsClientId=c)
        # the spec gives the base link frame; pybullet places a body by its base inertial frame
        local_pos, local_orn = p.getDynamicsInfo(self.body, -1, physicsClientId=c)[3:5]
        com = p.multiplyTransforms(spec.base_position, spec.base_orientation, local_pos, local_orn)
        p.resetBasePositionAndOrientation(self.body, com[0], com[1], physicsClientId=c)
        infos = [
            p.getJointInfo(self.body, j, physicsClientId=c) for j in range(p.getNumJoints(self.body, physicsClientId=c))
        ]
        names = [i[12].decode() for i in infos]
        if spec.ee_link not in names:
            base = p.getBodyInfo(self.body, physicsClientId=c)[0].decode()
            hint = " (it is the base link: pick a link after the arm joints)" if spec.ee_link == base else ""
            raise ValueError(f"{path}: no end-effector link {spec.ee_link!r}{hint}; links: {', '.join(names)}")
        self.ee_index = names.index(spec.ee_link)
        chain, j = [], self.ee_index
        while j >= 0:
            if infos[j][2] != p.JOINT_FIXED:
                chain.append(j)
            j = infos[j][16]
        self.chain = sorted(chain)
        if not self.chain:
            raise ValueError(f"{path}: no movable joint between the base and {spec.ee_link!r}")
        self.joint_names = [infos[j][1].decode() for j in self.chain]
        movable = [j for j, i in enumerate(infos) if i[2] != p.JOINT_FIXED]
        self._ik_columns = [movable.index(j) for j in self.chain]
        self.lower = np.array([infos[j][8] for j in self.chain])
        self.upper = np.array([infos[j][9] for j in self.chain])
        self.root = self._root_frame()

    def _root_frame(self) -> np.ndarray:
        """Base link frame origin: pybullet reports the base's inertial frame, so undo its local offset."""
        c = self.client
        pos, orn = p.getBasePositionAndOrientation(self.body, physicsClientId=c)
        local_pos, local_orn = p.getDynamicsInfo(self.body, -1, physicsClientId=c)[3:5]
        inv_pos, inv_orn = p.invertTransform(local_pos, local_orn)
        return np.asarray(p.multiplyTransforms(pos, orn, inv_pos, inv_orn)[0], dtype=np.float64)

    @property
    def n_joints(self) -> int:
        return len(self.chain)

    def check_joints(self, q: np.ndarray, what: str = "joint vector") -> np.ndarray:
        """`(T, n)` or `(n,)` -> `(T, n)` float64; ValueError naming the expected count otherwise."""
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.n_joints:
            raise ValueError(
                f"{what}: has {q.shape[-1] if q.ndim else 0} values per frame but robot {self.spec.name!r} has "
                f"{self.n_joints} movable joints from the base to {self.spec.ee_link!r} ({', '.join(self.joint_names)})"
            )
        if not np.isfinite(q).all():
            raise ValueError(f"{what}: holds NaN or inf")
        return q

    def forward(self, q: np.ndarray, opening: np.ndarray | None = None) -> ArmPose:
        """Joint values `(T, n)` (radians / metres) -> `ArmPose` over T frames."""
        q = self.check_joints(q)
        t, n = q.shape
        c, body = self.client, self.body
        links = [*self.chain, self.ee_index]
        joints = np.empty((t, n, 3))
        ee_pos, ee_rot = np.empty((t, 3)), np.empty((t, 3, 3))
        for k in range(t):
            p.resetJointStatesMultiDof(body, self.chain, [[v] for v in q[k]], physicsClientId=c)
            states = p.getLinkStates(body, links, computeForwardKinematics=True, physicsClientId=c)
            joints[k] = [s[4] for s in states[:n]]
            ee_pos[k] = states[n][4]
            ee_rot[k] = _rot(states[n][5])
        if opening is not None:
            opening = np.clip(np.asarray(opening, dtype=np.float64).reshape(t), 0.0, 1.0)
        return ArmPose(np.repeat(self.root[None], t, 0), joints, ee_pos, ee_rot, opening)

    def inverse(self, ee_pos: np.ndarray, ee_rpy: np.ndarray, q0: np.ndarray, refine: int = 4) -> np.ndarray:
        """End-effector targets `(T, 3)` positions and `(T, 3)` roll/pitch/yaw -> joints `(T, n)` via pybullet IK.

        Each frame starts from the previous solution (`q0` for the first) and is refined `refine` times by
        resetting the joints onto the last solution, as `actwm.sim.manip` does.
        """
        ee_pos, ee_rpy = np.asarray(ee_pos, dtype=np.float64), np.asarray(ee_rpy, dtype=np.float64)
        if ee_pos.ndim != 2 or ee_pos.shape[1] != 3 or ee_rpy.shape != ee_pos.shape:
            raise ValueError(f"inverse: ee positions and rpy must both be (T, 3), got {ee_pos.shape}, {ee_rpy.shape}")
        q = self.check_joints(q0, "initial joint vector")[0]
        c, body = self.client, self.body
        out = np.empty((len(ee_pos), self.n_joints))
        for k, (pos, rpy) in enumerate(zip(ee_pos, ee_rpy)):
            quat = p.getQuaternionFromEuler(rpy.tolist())
            for _ in range(refine):
                p.resetJointStatesMultiDof(body, self.chain, [[v] for v in q], physicsClientId=c)
                sol = p.calculateInverseKinematics(
                    body,
                    self.ee_index,
                    pos.tolist(),
                    quat,
                    maxNumIterations=60,
                    residualThreshold=1e-5,
                    physicsClientId=c,
                )
                q = np.asarray(sol, dtype=np.float64)[self._ik_columns]
            out[k] = q
        return out

    def close(self) -> None:
        if self.client >= 0:
            p.disconnect(self.client)
            self.client = -1

    def __enter__(self) -> "ArmKinematics":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
