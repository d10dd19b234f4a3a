"""Reading CLI options into typed configs: one home for the `Config(a=args.a, b=args.b, ...)` pattern.

Ground floor: imports nothing from actwm.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """`cls` built from the options of `args` named as its dataclass fields (options it lacks keep the field's
    default), with `overrides` (for fields whose option needs converting) applied last; `cls` validates."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.init and hasattr(args, f.name)}
    return cls(**{**values, **overrides})
