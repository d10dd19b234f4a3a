"""pybullet, imported once without its build-time banner.

pybullet's C extension prints "pybullet build time: ..." to the process's stderr when it is imported; every
actwm command that touches a simulator or the robots layer would then print a stray line before its own
output (and break the one-line error contract). The banner goes to /dev/null here; nothing else is hidden.
"""

from __future__ import annotations

import os
import sys


def _import_quietly():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import pybullet
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return pybullet


p = _import_quietly()

__all__ = ["p"]
