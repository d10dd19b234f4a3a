"""Finding and loading metric network weights (LPIPS trunks, I3D, DreamSim, Inception).

Weights cannot ship with actwm. A metric looks for its file(s) in this order:

1. ``weights=`` given by the user: a file, or a directory holding one of the official file names;
2. ``hub=`` given by the user: a Hugging Face repo id, fetched with ``huggingface_hub`` (cached);
3. ``$ACTWM_WEIGHTS_DIR`` (default ``~/.cache/actwm/weights``), then extra directories the metric
   names (e.g. torch hub's ``~/.cache/torch/hub/checkpoints`` for torchvision files).

When nothing is found, :class:`FileNotFoundError` names the file(s), where to get them and the
directories searched. Files are read with safetensors or ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

WEIGHTS_ENV = "ACTWM_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/actwm/weights")


def weights_dir() -> Path:
    """The actwm weights directory: ``$ACTWM_WEIGHTS_DIR`` or ``~/.cache/actwm/weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else DEFAULT_WEIGHTS_DIR.expanduser()


def torch_hub_checkpoints_dir() -> Path:
    """torch hub's checkpoint cache (where torchvision stores its downloads)."""
    home = os.environ.get("TORCH_HOME")
    base = (
        Path(home).expanduser() if home else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    )
    return base / "hub" / "checkpoints"


def _missing(
    what: str, filenames: Sequence[str], source: str, searched: Sequence[str], allow_hub: bool = True
) -> FileNotFoundError:
    names = " or ".join(repr(n) for n in filenames)
    where = "; ".join(searched) if searched else "(nothing)"
    hub = "hub=REPO_ID, " if allow_hub else ""
    return FileNotFoundError(
        f"{what}: weight file not found. Provide {names} (get it from {source}). "
        f"Pass weights=PATH (file or directory), {hub}or put the file in ${WEIGHTS_ENV} "
        f"(currently {weights_dir()}). Searched: {where}"
    )


def find_weights(
    filenames: Sequence[str],
    *,
    what: str,
    source: str,
    weights: str | os.PathLike | None = None,
    hub: str | None = None,
    extra_dirs: Sequence[Path] = (),
    allow_hub: bool = True,
) -> Path:
    """Locate a weight file by its official name(s); see the module docstring for the search order.

    Args:
        filenames: accepted official file names, preferred first.
        what: the metric/network, for messages (e.g. ``"LPIPS alex trunk"``).
        source: where a user gets the file (URL or instructions), for messages.
        weights: explicit file or directory.
        hub: Hugging Face repo id holding one of ``filenames``.
        extra_dirs: further directories searched after the actwm weights directory.
        allow_hub: whether the caller offers ``hub=`` (only changes the error message).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            for name in filenames:
                if (path / name).is_file():
                    return path / name
            raise _missing(what, filenames, source, [str(path)], allow_hub)
        raise FileNotFoundError(f"{what}: weights={str(path)!r} does not exist (expected {' or '.join(filenames)})")
    if hub is not None:
        return _from_hub(hub, filenames, what, source)
    searched = []
    for directory in (weights_dir(), *extra_dirs):
        for name in filenames:
            candidate = directory / name
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise _missing(what, filenames, source, searched, allow_hub)


def _from_hub(repo_id: str, filenames: Sequence[str], what: str, source: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub ships with transformers
        raise FileNotFoundError(f"{what}: hub={repo_id!r} needs the huggingface_hub package") from exc
    errors = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo_id, filename=name))
        except Exception as exc:  # offline, missing file, gated repo: report all below
            errors.append(f"{name}: {type(exc).__name__}")
    raise _missing(what, filenames, source, [f"hub {repo_id} ({', '.join(errors)})"])


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``, on CPU).

    A checkpoint that wraps its weights in ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a weights-only torch checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return dict(obj)


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a message naming the file.

    BatchNorm ``num_batches_tracked`` counters (absent from checkpoints saved by old torch versions)
    are the only keys filled in when missing; every other key must match.
    """
    state = dict(state_dict)
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: state dict does not match {type(module).__name__}: {exc}") from exc
