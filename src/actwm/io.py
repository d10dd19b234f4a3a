"""Atomic file writing: every file actwm writes appears whole or not at all.

A temp file is written in the destination directory, flushed and fsync'ed, given the mode any file the
user creates gets (`0o666 & ~umask`; `mkstemp` alone makes it 0600), then renamed over the target
(`os.replace` is atomic on POSIX and Windows within one filesystem). A writer killed mid-file leaves the
previous target intact and a hidden temp file (`.NAME.XXXXXXXX.tmpSUFFIX`) that `remove_temp_files` cleans.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

# mkstemp's random part is 8 characters of [a-z0-9_]; see `atomic_path` for the whole name
_TEMP_RE = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^./]*)?$")
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask (read from /proc where possible; else set and restored under a lock)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for the name of a temp file `atomic_path` creates (a leftover when its writer was killed)."""
    return bool(_TEMP_RE.match(Path(path).name))


def remove_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete `atomic_path` leftovers directly inside `directory` (not recursive); returns what was removed.

    Only call this where no other process is writing into `directory` at the same time.
    """
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.iterdir():
            if is_temp_file(p) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed to `path`, on error removed.

    Use for writers that need a filename (safetensors, PyAV, matplotlib, pyarrow).
    The temp name keeps the target's suffix so format sniffing by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Serialise `obj` as JSON and write it to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in `chunk`-byte blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising a ValueError that names the file when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
