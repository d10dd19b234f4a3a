"""actwm.data: episodes, dataset readers/writers (LeRobot v3.0/v2.1, GNM/NWM, RECON, 1X) and the clip sampler.

    from actwm.data import LeRobotDataset, ClipDataset
    ds = LeRobotDataset("runs/nav")            # episodes with frames, actions, state, extras, meta
    clips = ClipDataset("runs/nav", context=1, horizon=8, target_fps=5)

Submodules are imported lazily so `import actwm.data` stays light. Conversion and simulation:
`actwm.data.convert.convert(...)`, `actwm.data.convert.simulate(...)` (or `actwm data convert|simulate`).
"""

from __future__ import annotations

import importlib
from typing import Any

from actwm.episode import Episode

_LAZY = {
    "LeRobotDataset": "actwm.data.lerobot",
    "LeRobotWriter": "actwm.data.lerobot",
    "GNMDataset": "actwm.data.gnm",
    "ReconDataset": "actwm.data.recon",
    "OneXDataset": "actwm.data.onex",
    "ClipDataset": "actwm.data.clips",
    "ClipConfig": "actwm.data.clips",
    "open_source": "actwm.data.convert",
    "nav_actions": "actwm.data.gnm",
}

__all__ = ["Episode", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actwm.data' has no attribute {name!r}")
