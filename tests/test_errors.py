"""The one error boundary: bad input is one line on stderr with exit code 2; --debug shows the traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from actwm import cli
from actwm.errors import one_line, run_guarded


def _raise(exc: BaseException):
    def fn(argv: list[str]) -> int:
        raise exc

    return fn


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ValueError("--frames must be >= 2, got -5"), "--frames must be >= 2, got -5"),
        (PermissionError(13, "Permission denied", "/ro/out.json"), "/ro/out.json: Permission denied"),
        (IsADirectoryError(21, "Is a directory", "/tmp"), "/tmp: Is a directory"),
        (KeyError("action"), "KeyError: 'action' (unexpected; rerun with --debug for the traceback)"),
    ],
)
def test_boundary_prints_one_line_and_exits_2(capsys, exc, expected):
    assert run_guarded("x", _raise(exc), ["a"]) == 2
    err = capsys.readouterr().err
    assert err == f"actwm x: error: {expected}\n"


def test_multiline_messages_are_folded_to_one_line():
    assert one_line(ValueError("first\n  second")) == "first second"


def test_debug_reraises_and_is_removed_from_argv():
    seen = []

    def fn(argv):
        seen.append(argv)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_guarded("x", fn, ["--debug", "a"])
    assert seen == [["a"]]


def test_success_passes_the_exit_code_through():
    assert run_guarded("x", lambda argv: 0, []) == 0
    assert run_guarded("x", lambda argv: None, []) == 0
    assert run_guarded("x", lambda argv: 3, []) == 3


def test_real_command_without_traceback(tmp_path):
    """A real process: `actwm rollout` on a missing checkpoint gives one stderr line, exit 2, no traceback."""
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, "-m", "actwm.cli", "rollout", "--checkpoint", str(missing), "--frame", str(missing)]
        + ["--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(missing) in lines[0]
    assert not (tmp_path / "o").exists()


def test_every_command_is_dispatched_through_the_boundary(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_guarded", lambda name, fn, argv: calls.append(name) or 0)
    for name in cli.COMMANDS:
        assert cli.main([name, "--help"]) == 0
    assert calls == list(cli.COMMANDS)


def test_usage_errors_are_one_line(capsys):
    from actwm.errors import ArgumentParser

    parser = ArgumentParser(prog="actwm x")
    parser.add_argument("--frames", type=int, required=True)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--frames", "many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--frames" in err and err.startswith("actwm x: error:")


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_turns_an_unknown_option_into_one_line(capsys, name):
    """Every registered command's parser is `actwm.errors.ArgumentParser`: one stderr line, exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--no-such-option"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"actwm {name}") and err.rstrip().endswith("--help)"), err
