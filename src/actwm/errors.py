"""One error boundary for every `actwm` command.

Expected failures (bad options, bad or missing files, unreadable or unwritable paths, data that does not fit)
reach the user as ONE line naming what is wrong, with exit code 2 and no traceback; `--debug` (anywhere on the
command line) shows the traceback instead. Ground floor: imports nothing from actwm.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

DEBUG_FLAG = "--debug"
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# raised by library code for bad input; anything else is reported as unexpected (still one line)
EXPECTED = (ValueError, FileNotFoundError, OSError, ImportError)


def one_line(exc: BaseException) -> str:
    """A single-line description of `exc` that names the file for OS errors."""
    if isinstance(exc, OSError) and exc.filename is not None:  # raised by the OS: name the path
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    if not isinstance(exc, EXPECTED):
        text = f"{type(exc).__name__}: {text} (unexpected; rerun with {DEBUG_FLAG} for the traceback)"
    return " ".join(text.split())


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove every `--debug` from `argv`; return the rest and whether it was there."""
    rest = [a for a in argv if a != DEBUG_FLAG]
    return rest, len(rest) != len(argv)


def run_guarded(name: str, fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run `fn(argv)`; turn any exception into one line on stderr and exit code 2 (130 on Ctrl-C).

    `SystemExit` passes through (argparse's own usage errors already print one usage line and exit 2).
    """
    argv, debug = split_debug(argv)
    try:
        return int(fn(argv) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"actwm {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - this is the boundary
        if debug:
            raise
        print(f"actwm {name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `PROG: error: MESSAGE (see PROG --help)`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")
