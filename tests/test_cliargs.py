"""`config_from_args`: CLI options named as a config's fields fill it; the rest keep their defaults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

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
