"""`actwm train`: fine-tune a video backbone into an action-conditioned world model.

Every `TrainConfig` field is a flag (`--batch-size 4`, `--ema-decay 0.999`, `--no-cpu`, ...) and can
also be set with `--set key=value` (applied last). Resolution order: `--preset`, then `--config FILE`
(e.g. a saved `train_config.json`), then flags, then `--set`. `none` sets an optional field to None.

Examples::

    actwm train --data STORE --out runs/passive --preset tiny-cpu --passive
    actwm train --data STORE --out runs/action --preset tiny-cpu --init-from runs/passive/final
    actwm train --data STORE --out runs/action --preset tiny-cpu --resume      # continue after a crash
    accelerate launch --num_processes 8 -m actwm.train.cli --preset svd-8gpu --data STORE --out RUN
    torchrun --nproc_per_node 2 -m actwm.train.cli --preset tiny-cpu --data STORE --out RUN   # 2 CPU processes
    accelerate launch --multi_gpu --num_processes 2 -m actwm.train.cli ...   # also CPU processes without GPUs
                                         # (`accelerate launch --cpu` starts only one process)
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import fields
from typing import Any

from accelerate import PartialState

from actwm.errors import ArgumentParser
from actwm.io import read_json
from actwm.train.config import PRESETS, TrainConfig, field_types
from actwm.train.trainer import train

_HELP = {
    "data": "LeRobot store root",
    "out": "run directory (checkpoints/, final/, metrics.csv)",
    "model": "world-model preset (svd-tiny, cosmos-tiny, wan2.1-tiny, wan2.2-tiny, svd, cosmos2-2b, ...)",
    "init_from": "saved world-model directory to start from (e.g. the passive stage's final/)",
    "train_mode": "full | lora | frozen",
    "passive": "passive stage: action-free training of the bare backbone",
    "resume": "continue from the newest checkpoint in --out",
    "mixed_precision": "no | bf16 | fp16",
    "distributed": "auto | ddp | fsdp",
    "model_overrides": 'JSON object of WorldModelConfig fields, e.g. \'{"encoder": {"hidden_dim": 128}}\'',
}


def parse_value(name: str, text: str) -> Any:
    """Convert the CLI string `text` for TrainConfig field `name` (ValueError names the field)."""
    hints = field_types()
    if name not in hints:
        raise ValueError(f"unknown TrainConfig field {name!r}; fields: {', '.join(hints)}")
    hint = hints[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    try:
        if base is bool:
            low = text.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return low in ("1", "true", "yes", "on")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is dict or typing.get_origin(base) is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(text)
            return value
        if base is tuple or typing.get_origin(base) is tuple:
            value = json.loads(text) if text.strip().startswith("[") else [v for v in text.split(",") if v.strip()]
            return tuple(float(v) for v in value)
        return text
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"TrainConfig.{name}: cannot parse {text!r} as {getattr(base, '__name__', base)}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="actwm train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--preset", choices=list(PRESETS), default=None, help="named defaults (tiny-cpu, svd-8gpu, cosmos2-2b-8gpu)"
    )
    p.add_argument("--config", default=None, help="JSON TrainConfig to start from (e.g. a saved train_config.json)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any TrainConfig field (repeatable)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hints = field_types()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            p.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=_HELP.get(f.name),
            )
        else:
            p.add_argument(
                flag, dest=f.name, type=str, default=argparse.SUPPRESS, metavar=f.name.upper(), help=_HELP.get(f.name)
            )
    return p


def resolve_config(argv: list[str]) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse `argv` into a validated TrainConfig (preset < --config < flags < --set)."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = TrainConfig.preset(args.preset).to_dict() if args.preset else {}
    if args.config:
        loaded = read_json(args.config)
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a JSON object of TrainConfig fields")
        values.update(loaded)
    names = {f.name for f in fields(TrainConfig)}
    for name in names:
        if name in vars(args):
            raw = getattr(args, name)
            values[name] = raw if isinstance(raw, bool) else parse_value(name, raw)
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        values[key] = parse_value(key, text)
    return TrainConfig.from_dict(values), args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, args = resolve_config(argv)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    result = train(cfg, progress=not args.no_progress)
    if PartialState().is_main_process:
        print(
            f"trained {result.steps} steps in {result.seconds:.1f} s; final loss {result.losses[-1]:.4f}"
            if result.losses
            else "nothing to train"
        )
        print(f"world model: {result.final_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
