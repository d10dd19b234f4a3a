"""Crash-safe training checkpoints.

Layout under the run directory::

    checkpoints/step-0000100/config.json         world-model config   (WorldModel.load reads this dir)
    checkpoints/step-0000100/model.safetensors   live (non-EMA) weights
    checkpoints/step-0000100/train_state.pt      optimizer, scheduler, EMA, step, losses, RNG states
    checkpoints/step-0000100/train_config.json   the TrainConfig of the run
    checkpoints/step-0000100/checksums.json      size and sha256 of every file above
    checkpoints/latest                           text: the name of the newest complete checkpoint

A checkpoint is written into a hidden temp directory (`.tmp-step-...`), every file fsync'ed, and only
then renamed to `step-XXXXXXX` (a directory rename is atomic), after which `latest` is rewritten
atomically. Old checkpoints are renamed to `.del-...` before removal. A run killed at any moment thus
leaves only complete checkpoints plus hidden leftovers, which `clean_partial` removes. A checkpoint
damaged afterwards (a truncated copy, a flipped bit) fails `verify` against its `checksums.json`;
`resume_candidate` then sets it aside as `corrupt-step-...` and resumes from the previous good one.
`train_state.pt` holds only tensors and plain Python containers and is read with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import os
import pickle  # only for its UnpicklingError: train_state.pt is read with torch.load(weights_only=True)
import random
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from actwm.io import atomic_write_json, atomic_write_text, file_sha256, read_json, remove_temp_files

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TRAIN_STATE = "train_state.pt"
TRAIN_CONFIG = "train_config.json"
MANIFEST = "checksums.json"
REQUIRED = ("config.json", "model.safetensors", TRAIN_STATE, TRAIN_CONFIG)
CORRUPT_PREFIX = "corrupt-"
_STEP_RE = re.compile(r"^step-(\d{7,})$")


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def step_of(path: str | os.PathLike) -> int:
    """The optimizer step of a checkpoint directory `.../step-XXXXXXX`."""
    m = _STEP_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not a checkpoint directory name (expected step-XXXXXXX)")
    return int(m.group(1))


def is_complete(path: str | os.PathLike) -> bool:
    """True when `path` is a finished checkpoint directory (all files present)."""
    path = Path(path)
    return path.is_dir() and bool(_STEP_RE.match(path.name)) and all((path / f).is_file() for f in REQUIRED)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if is_complete(p)), key=step_of)


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint: the one `latest` names if complete, else the highest step."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    complete = list_checkpoints(run_dir)
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if is_complete(named) and (not complete or step_of(named) >= step_of(complete[-1])):
            return named
    return complete[-1] if complete else None


def clean_partial(run_dir: str | os.PathLike) -> list[Path]:
    """Remove leftovers of interrupted writes/deletions (`.tmp-*`, `.del-*` and `atomic_path`'s
    `.latest.*.tmp`); returns what was removed."""
    root = Path(run_dir) / CHECKPOINTS
    removed = remove_temp_files(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".del-")):
                _remove(p)
                removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------ verification


def write_manifest(ckpt_dir: Path) -> None:
    """`checksums.json`: `{file: {"bytes": n, "sha256": hex}}` of every other file in `ckpt_dir`."""
    files = sorted(p for p in ckpt_dir.iterdir() if p.is_file() and p.name != MANIFEST)
    atomic_write_json(
        ckpt_dir / MANIFEST, {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    )


def verify(ckpt_dir: str | os.PathLike) -> str | None:
    """Why checkpoint `ckpt_dir` cannot be resumed from (a missing file, a size or checksum that differs
    from `checksums.json`, an unreadable file), or None when it is sound. Checkpoints written before
    manifests existed are checked by reading their training state and weights header."""
    path = Path(ckpt_dir)
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    if (path / MANIFEST).is_file():
        try:
            manifest = read_json(path / MANIFEST)
        except ValueError as exc:
            return str(exc)
        for name in REQUIRED:
            entry = manifest.get(name) if isinstance(manifest, dict) else None
            if not isinstance(entry, dict):
                return f"{MANIFEST} has no entry for {name}"
            size = (path / name).stat().st_size
            if size != entry.get("bytes"):
                return f"{name} has {size} bytes, {entry.get('bytes')} were written"
            if file_sha256(path / name) != entry.get("sha256"):
                return f"{name} differs from the bytes written (sha256 mismatch)"
        return None
    try:  # no manifest: at least both binary files must parse
        load_train_state(path)
        with safe_open(str(path / "model.safetensors"), framework="pt") as fh:
            list(fh.keys())
    except (ValueError, RuntimeError, EOFError, OSError, SafetensorError) as exc:
        return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def resume_candidate(run_dir: str | os.PathLike, warn: Callable[[str], Any]) -> Path | None:
    """The newest checkpoint that passes `verify`; each newer one that fails is renamed to
    `corrupt-step-...` (kept for inspection, ignored from then on) with one `warn(line)` about it."""
    for path in reversed(list_checkpoints(run_dir)):
        reason = verify(path)
        if reason is None:
            return path
        aside = path.parent / f"{CORRUPT_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, aside)
        older = [p.name for p in list_checkpoints(run_dir)]
        fallback = f"resuming from {older[-1]}" if older else "no older checkpoint: starting from step 0"
        warn(f"checkpoint {path} is corrupt ({reason}); moved to {aside.name}; {fallback}")
    return None


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    save_model: Callable[[Path], Any],
    train_state: dict[str, Any],
    train_config: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it and prune to the newest `keep_last`.

    Args:
        save_model: writes the world model (config.json + model.safetensors) into the given directory.
        train_state: tensors / plain containers only (loadable with `weights_only=True`).
    Returns:
        the checkpoint directory.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(tmp)
        torch.save(train_state, tmp / TRAIN_STATE)
        atomic_write_json(tmp / TRAIN_CONFIG, train_config)
        write_manifest(tmp)
        _fsync_tree(tmp)
        if final.exists():  # a stale checkpoint of the same step (e.g. from a run that was not resumed)
            trash = root / f".del-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            _remove(trash)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(root)
    atomic_write_text(root / LATEST, final.name + "\n")
    prune(run_dir, keep_last)
    return final


def prune(run_dir: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints (never the one `latest` names)."""
    keep = find_latest(run_dir)
    ckpts = list_checkpoints(run_dir)
    for p in ckpts[: max(0, len(ckpts) - keep_last)]:
        if keep is not None and p == keep:
            continue
        trash = p.parent / f".del-{p.name}-{uuid.uuid4().hex[:8]}"
        os.replace(p, trash)
        _remove(trash)


def load_train_state(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """Read `train_state.pt` safely (`weights_only=True`, on CPU); a damaged file is a ValueError naming it."""
    path = Path(ckpt_dir) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing training state")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable training state ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path}: not a training state (no 'step')")
    return state


def read_json_safe(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from `path`, or {} when it is missing or unreadable (for informational files)."""
    try:
        obj = read_json(path)
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


# ------------------------------------------------------------------------------------------ RNG states


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, python) as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _python_state_from_plain(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


__all__ = [
    "CHECKPOINTS",
    "LATEST",
    "TRAIN_STATE",
    "TRAIN_CONFIG",
    "step_name",
    "step_of",
    "is_complete",
    "list_checkpoints",
    "find_latest",
    "clean_partial",
    "verify",
    "write_manifest",
    "resume_candidate",
    "MANIFEST",
    "save_checkpoint",
    "prune",
    "load_train_state",
    "read_json_safe",
    "rng_state",
    "set_rng_state",
]
