"""`actwm demo`: the whole loop on the embedded default, on a laptop CPU (see `actwm.demo.pipeline`).

Modules: `config` (DemoConfig), `stages` (simulate, train, roll out, score), `pipeline` (the stage list and
`run_demo`), `report` (plots and report.html), `command` (`main`, the `actwm demo` entry point).
"""

from actwm.demo.command import main
from actwm.demo.config import DEFAULT_OUT, DemoConfig, resolve_precision
from actwm.demo.pipeline import DEFAULT_STAGES, DemoState, insert_stage, run_demo
from actwm.demo.stages import shuffled_order

__all__ = [
    "main",
    "DEFAULT_OUT",
    "DemoConfig",
    "resolve_precision",
    "DEFAULT_STAGES",
    "DemoState",
    "insert_stage",
    "run_demo",
    "shuffled_order",
]
