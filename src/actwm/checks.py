"""Validation of typed configs at construction: one home for the common checks and for their message.

A failed check raises `ConfigError` (a `ValueError`) that names the field as `Owner.field`, says what it must
be and shows the value given: `TrainConfig.steps must be >= 1, got 0`. `actwm.cliargs.config_from_args`
names the command-line option instead (`--steps must be >= 1, got 0`).

    def __post_init__(self) -> None:
        require_at_least(self, 1, "steps", "batch_size")
        require_choice(self, "schedule", ("cosine", "constant"))
        require(self.lr > 0, self, "lr", "> 0")

`obj` is the config (its class name is the owner) or, for checks outside a dataclass, an owner name together
with the value. Ground floor: imports nothing from actwm.
"""

from __future__ import annotations

from typing import Any, Iterable

_NO_VALUE = object()


class ConfigError(ValueError):
    """A config field that fails its check: `owner`, `field`, `requirement` (what it must be) and `value`."""

    def __init__(self, owner: str, field: str, requirement: str, value: Any = _NO_VALUE) -> None:
        self.owner, self.field, self.requirement, self.value = owner, field, requirement, value
        super().__init__(self.message(f"{owner}.{field}"))

    def message(self, name: str) -> str:
        """The message with the field called `name` (e.g. its command-line option)."""
        got = "" if self.value is _NO_VALUE else f", got {self.value!r}"
        return f"{name} must be {self.requirement}{got}"


def _owner(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


def require(ok: bool, obj: Any, field: str, requirement: str, value: Any = _NO_VALUE) -> None:
    """Raise `ConfigError` naming `obj.field` unless `ok` (`value`: default `getattr(obj, field)`)."""
    if not ok:
        if value is _NO_VALUE and not isinstance(obj, str):
            value = getattr(obj, field)
        raise ConfigError(_owner(obj), field, requirement, value)


def require_choice(obj: Any, field: str, choices: Iterable[Any]) -> None:
    """`obj.field` must be one of `choices`."""
    choices = tuple(choices)
    require(getattr(obj, field) in choices, obj, field, f"one of {choices}")


def require_at_least(obj: Any, lo: float, *fields: str, optional: bool = False) -> None:
    """Each of `fields` must be a number >= `lo` (`optional`: or None)."""
    for field in fields:
        value = getattr(obj, field)
        if optional and value is None:
            continue
        require(value is not None and value >= lo, obj, field, f">= {lo}" + (" or None" if optional else ""))


def require_positive(obj: Any, *fields: str, optional: bool = False) -> None:
    """Each of `fields` must be a number > 0 (`optional`: or None)."""
    for field in fields:
        value = getattr(obj, field)
        if optional and value is None:
            continue
        require(value is not None and value > 0, obj, field, "> 0" + (" or None" if optional else ""))


def require_range(obj: Any, field: str, lo: float, hi: float, *, closed: str = "[]") -> None:
    """`obj.field` must lie between `lo` and `hi`; `closed` gives the interval's brackets ("[]", "[)", "(]", "()")."""
    value = getattr(obj, field)
    above = value >= lo if closed[0] == "[" else value > lo
    below = value <= hi if closed[1] == "]" else value < hi
    require(above and below, obj, field, f"in {closed[0]}{lo}, {hi}{closed[1]}")
