"""Writing the run's final world model (`out/final/`) atomically, and FSDP's gathered state dicts."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import torch

from actwm.io import atomic_write_json
from actwm.models.loading import write_checkpoint
from actwm.models.world_model import WorldModel

FINAL = "final"
TMP_FINAL = ".tmp-final-"
DEL_PREFIX = ".del-"


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory `src` to `dst`, replacing an existing `dst` (old one renamed away first)."""
    if dst.exists():
        trash = dst.parent / f"{DEL_PREFIX}{dst.name}-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def write_final(out: Path, save_model: Callable[[Path], Any], train_config: dict[str, Any], config_name: str) -> Path:
    """Write `out/final/` through a hidden temp directory: `save_model(dir)` then `config_name` (the TrainConfig)."""
    final = out / FINAL
    tmp = out / f"{TMP_FINAL}{uuid.uuid4().hex[:8]}"
    try:
        save_model(tmp)
        atomic_write_json(tmp / config_name, train_config)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def clean_final_leftovers(out: Path) -> list[Path]:
    """Remove `out/.tmp-final-*` and `out/.del-final-*` left by a run killed while writing `final/`."""
    removed = []
    if out.is_dir():
        for p in out.iterdir():
            if p.name.startswith((TMP_FINAL, f"{DEL_PREFIX}{FINAL}-")):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                removed.append(p)
    return removed


def save_state_dict(wm: WorldModel, state: dict[str, torch.Tensor], directory: Path) -> None:
    """Write a gathered (FSDP) state dict of `wm` in the `WorldModel.save` format (with the weights' sha256)."""
    skip = wm.external_prefixes()
    write_checkpoint(directory, {k: v for k, v in state.items() if not k.startswith(skip)}, wm.config.to_dict())


__all__ = ["FINAL", "replace_dir", "write_final", "clean_final_leftovers", "save_state_dict"]
