"""Reading CLI options into typed configs: one home for the `Config(a=args.a, b=args.b, ...)` pattern.

Ground floor: imports only the ground floor (`actwm.checks`).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields, is_dataclass, replace
from typing import Any, TypeVar

from actwm.checks import ConfigError

T = TypeVar("T")


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """`cls` built from the options of `args` named as its dataclass fields (options it lacks keep the field's
    default), with `overrides` (for fields whose option needs converting) applied last; `cls` validates.

    A field whose default is itself a dataclass (a nested config, e.g. `PlanRunConfig.planner`) takes the options
    named as ITS fields, over that default: `--horizon` sets `PlanRunConfig.planner.horizon`.

    A field that fails its check (`actwm.checks.ConfigError`) and came from an option is named as that option:
    `--guidance-interval must be ...` rather than `RolloutConfig.guidance_interval must be ...`."""
    try:
        return cls(**{**_values(cls, args), **overrides})
    except ConfigError as exc:
        if not hasattr(args, exc.field):
            raise
        raise ValueError(exc.message("--" + exc.field.replace("_", "-"))) from exc


def _values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """Field values of `cls` given by `args`; a nested config field: its default with the options it names."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not f.init:
            continue
        if hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
        elif is_dataclass(default := _default(f)) and (inner := _values(type(default), args)):
            values[f.name] = replace(default, **inner)  # type: ignore[type-var]
    return values


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default
