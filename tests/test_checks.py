"""`actwm.checks`: one message format naming `Owner.field`, the requirement and the value given."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from actwm.checks import ConfigError, require, require_at_least, require_choice, require_positive, require_range
from actwm.cliargs import config_from_args


@dataclass
class _Cfg:
    steps: int = 1
    mode: str = "a"
    rate: float | None = None
    fraction: float = 0.5
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        require_at_least(self, 1, "steps")
        require_choice(self, "mode", ("a", "b"))
        require_positive(self, "rate", optional=True)
        require_range(self, "fraction", 0.0, 1.0, closed="[)")
        lo, hi = self.guidance_interval
        require(lo < hi, self, "guidance_interval", "(lo, hi) with lo < hi")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"steps": 0}, "_Cfg.steps must be >= 1, got 0"),
        ({"mode": "c"}, "_Cfg.mode must be one of ('a', 'b'), got 'c'"),
        ({"rate": 0.0}, "_Cfg.rate must be > 0 or None, got 0.0"),
        ({"rate": float("nan")}, "_Cfg.rate must be > 0 or None, got nan"),
        ({"fraction": 1.0}, "_Cfg.fraction must be in [0.0, 1.0), got 1.0"),
        ({"guidance_interval": (1.0, 1.0)}, "_Cfg.guidance_interval must be (lo, hi) with lo < hi, got (1.0, 1.0)"),
    ],
)
def test_a_failed_check_names_owner_field_requirement_and_value(bad, message):
    with pytest.raises(ConfigError) as info:
        _Cfg(**bad)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and info.value.field == next(iter(bad))


def test_valid_values_pass():
    cfg = _Cfg(steps=3, mode="b", rate=None, fraction=0.0, guidance_interval=(0.2, 0.9))
    assert cfg.fraction == 0.0 and cfg.rate is None


def test_the_cli_names_the_option_of_a_failed_field():
    args = argparse.Namespace(steps=1, guidance_interval=[1.0, 0.5], fraction=0.5)
    with pytest.raises(ValueError, match=r"^--guidance-interval must be \(lo, hi\) with lo < hi, got \(1.0, 0.5\)$"):
        config_from_args(_Cfg, args, guidance_interval=tuple(args.guidance_interval))
    with pytest.raises(ValueError, match=r"^--steps must be >= 1, got 0$"):
        config_from_args(_Cfg, argparse.Namespace(steps=0))
    with pytest.raises(ValueError, match=r"^_Cfg.mode must be one of"):  # no --mode option: the field's own name
        config_from_args(_Cfg, argparse.Namespace(steps=1), mode="x")
