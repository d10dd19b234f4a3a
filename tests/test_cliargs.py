"""`config_from_args`: CLI options named as a config's fields fill it; the rest keep their defaults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from actwm.cliargs import config_from_args


@dataclass(frozen=True)
class _Cfg:
    steps: int = 20
    window: int = 4
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"_Cfg.steps must be >= 1, got {self.steps}")


def test_named_options_fill_the_config_and_overrides_win():
    args = argparse.Namespace(steps=7, interval=[0.3, 1.0], out="x", seed=3)  # out, seed: not fields, ignored
    cfg = config_from_args(_Cfg, args, interval=tuple(args.interval))
    assert cfg == _Cfg(steps=7, window=4, interval=(0.3, 1.0))  # window: no option -> the field's default


def test_the_config_still_validates():
    with pytest.raises(ValueError, match="_Cfg.steps must be >= 1, got 0"):
        config_from_args(_Cfg, argparse.Namespace(steps=0))


@dataclass(frozen=True)
class _Outer:
    name: str = "run"
    inner: _Cfg = field(default_factory=lambda: _Cfg(window=9))
    untouched: _Cfg = field(default_factory=_Cfg)


def test_a_nested_config_takes_the_options_named_as_its_fields_over_its_default():
    cfg = config_from_args(_Outer, argparse.Namespace(name="x", steps=5))
    assert cfg.inner == _Cfg(steps=5, window=9)  # the option over the nested default (window 9 kept)
    assert cfg.untouched == _Cfg(steps=5)
    assert config_from_args(_Outer, argparse.Namespace()) == _Outer()  # no options: the defaults


def test_a_nested_fields_failed_check_is_named_as_its_option():
    """`actwm plan --horizon 3 --execute 5`: the check is `PlannerConfig`'s, nested in `PlanRunConfig.planner`."""
    from actwm.planning.cli import parser
    from actwm.planning.runner import PlanRunConfig

    args = parser().parse_args(["--json", "x.json", "--proposals", "3", "--horizon", "4", "--execute", "2"])
    planner = config_from_args(PlanRunConfig, args).planner
    assert (planner.proposals, planner.horizon, planner.execute) == (3, 4, 2)
    args = parser().parse_args(["--json", "x.json", "--horizon", "3", "--execute", "5"])
    with pytest.raises(ValueError, match=r"^--execute must be in 1\.\.horizon=3 \(k\), got 5$"):
        config_from_args(PlanRunConfig, args)
