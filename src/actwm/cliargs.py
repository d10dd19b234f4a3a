"""Reading CLI options into typed configs: one home for the `Config(a=args.a, b=args.b, ...)` pattern.

Ground floor: imports only the ground floor (`actwm.checks`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, TypeVar

from actwm.checks import ConfigError

T = TypeVar("T")


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """`cls` built from the options of `args` named as its dataclass fields (options it lacks keep the field's
    default), with `overrides` (for fields whose option needs converting) applied last; `cls` validates.

    A field that fails its check (`actwm.checks.ConfigError`) and came from an option is named as that option:
    `--guidance-interval must be ...` rather than `RolloutConfig.guidance_interval must be ...`."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.init and hasattr(args, f.name)}
    try:
        return cls(**{**values, **overrides})
    except ConfigError as exc:
        if not hasattr(args, exc.field):
            raise
        raise ValueError(exc.message("--" + exc.field.replace("_", "-"))) from exc
