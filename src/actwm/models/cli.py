"""`actwm info`: list world-model presets, their stated assumptions, and the action spaces."""

from __future__ import annotations

import json

import torch

from actwm.actions import PRESETS as ACTION_SPACES
from actwm.errors import ArgumentParser
from actwm.models.world_model import PRESETS, WorldModel, get_preset


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="actwm info", description=__doc__)
    parser.add_argument("--preset", help="describe one preset in detail (sizes computed on the meta device)")
    parser.add_argument("--action-space", default="nav3", help="action space for --preset (default: nav3)")
    args = parser.parse_args(argv)
    if args.preset:
        cfg = get_preset(args.preset, args.action_space)
        if cfg.codec["kind"] == "pixel":
            info = WorldModel.from_config(cfg).describe()
        else:
            with torch.device("meta"):
                info = WorldModel.from_config(cfg, load_codec=False).describe()
            info["weights"] = cfg.source
        print(json.dumps(info, indent=2))
        return 0
    print("world-model presets:")
    for name, (backbone, _) in PRESETS.items():
        cfg = get_preset(name)
        print(
            f"  {name:<16} backbone={backbone:<7} codec={cfg.codec['kind']:<8} "
            f"weights={cfg.source or 'built from config'}"
        )
    print("\naction spaces:")
    for name, space in ACTION_SPACES.items():
        print(f"  {name:<11} D={space.dim:<3} {', '.join(space.names[:8])}{' ...' if space.dim > 8 else ''}")
    print("  customD     any D (e.g. custom12)")
    return 0
