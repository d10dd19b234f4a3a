"""Output paths of the eval commands: checked before any computing; temp files of killed runs found."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_outputs", "stale_temps"]


def check_outputs(outputs: dict[str, Path]) -> None:
    """Raise ValueError naming the option when an output path cannot be written (nothing is created)."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        resolved = path.resolve()
        if resolved in seen:
            raise ValueError(f"{option} {path}: the same file as {seen[resolved]}")
        seen[resolved] = option
        if path.is_dir():
            raise ValueError(f"{option} {path}: is a directory")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"{option} {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: {parent} is not writable")


def stale_temps(path: Path) -> list[Path]:
    """Temp files of `actwm.io.atomic_path` for `path` (`.STEM.XXXX.tmpSUFFIX`) that a killed run left."""
    if not path.parent.is_dir():
        return []
    prefix, suffix = f".{path.stem}.", f".tmp{path.suffix}"
    return [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)]
