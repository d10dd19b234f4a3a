"""Reading untrusted datasets: paths that stay inside the dataset, and pickles that can only hold data.

- `inside_root(root, relative, what)`: `root / relative`, refusing absolute paths, `..` and symlinks that
  lead outside `root` (ValueError naming `what`). Every path taken from a dataset (a name in a split file,
  a template in a JSON file, a file found by listing a folder) goes through it. One exception keeps the
  Hugging Face cache usable: when `root` is a snapshot (`<repo>/snapshots/<rev>/...`), links may lead into
  that repository's cache folder (its `blobs/`), and nowhere else.
- `load_data_pickle(path)`: unpickles with a restricted unpickler that admits only numpy arrays (and what
  numpy needs to rebuild them: `ndarray`, `dtype`, the `_reconstruct` / `scalar` / `_frombuffer` helpers,
  under numpy 1.x's `numpy.core` or numpy 2's `numpy._core` module paths), lists, dicts, tuples, numbers and
  strings. Anything else (a class, a function such as `os.system`) raises ValueError naming the file,
  before it is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["inside_root", "load_data_pickle"]


def inside_root(root: str | Path, relative: str | Path, what: str) -> Path:
    """`root / relative` when it stays inside `root` (lexically and after resolving symlinks), else ValueError
    naming `what` (the file or field the path came from)."""
    root = Path(root)
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or str(relative).strip() == "":
        raise ValueError(f"{what}: path {str(relative)!r} is not a relative path inside {root}")
    path = root / rel
    real = path.resolve()
    if not any(real == area or area in real.parents for area in _allowed_areas(root)):
        raise ValueError(f"{what}: path {str(relative)!r} leads outside {root} (to {real})")
    return path


def _allowed_areas(root: Path) -> list[Path]:
    """Where paths below `root` may resolve to: `root`, and for a Hugging Face cache snapshot
    (`.../<repo>/snapshots/<rev>/...`) the repository's cache folder, which holds the linked `blobs/`."""
    real_root = root.resolve()
    areas = [real_root]
    for anc in (real_root, *real_root.parents):
        if anc.parent.name == "snapshots" and (anc.parent.parent / "blobs").is_dir():
            areas.append(anc.parent.parent)
            break
    return areas


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(obj, "latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The numpy callables an ndarray / scalar pickle names, under numpy 1.x and 2.x module paths."""
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = np.ndarray((1,)).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _DataUnpickler(pickle.Unpickler):
    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key not in self._allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return self._allowed[key]


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle `path` admitting only numpy arrays, lists, dicts, tuples, numbers and strings (module
    docstring); anything else, or a corrupt file, raises ValueError naming `path`."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return _DataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refused to unpickle ({exc}); only numpy arrays, lists, dicts, tuples, numbers and "
            "strings are read from dataset pickles"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure of a bad file (EOF, bad opcode, ...)
        raise ValueError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
