"""`actwm.sim` sits below the data layer: importing it must not pull in `actwm.data` (nor planning)."""

from __future__ import annotations

import subprocess
import sys


def test_sim_imports_neither_data_nor_planning():
    code = (
        "import sys, actwm.sim, actwm.sim.scripted; "
        "bad = sorted(m for m in sys.modules if m.startswith(('actwm.data', 'actwm.planning'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
