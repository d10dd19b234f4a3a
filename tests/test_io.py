"""Atomic writes (actwm.io): a writer killed mid-file leaves the previous file whole; outputs follow the umask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from actwm.io import atomic_path, atomic_write_bytes, atomic_write_text, is_temp_file, remove_temp_files

# a writer that streams a large file through atomic_path slowly enough to be killed in the middle
WRITER = textwrap.dedent(
    """
    import sys, time
    from actwm.io import atomic_path
    target, ready = sys.argv[1], sys.argv[2]
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            for i in range(4000):  # 4000 x 64 KiB = 250 MiB, about 20 s
                fh.write(bytes([i % 251]) * 65536)
                fh.flush()
                if i == 8:
                    open(ready, "w").close()
                time.sleep(0.005)
    """
)


def test_sigkill_mid_file_leaves_previous_target(tmp_path):
    target, ready = tmp_path / "weights.bin", tmp_path / "ready"
    atomic_write_bytes(target, b"previous, complete content")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ready)], env=env)
    try:
        deadline = time.time() + 60
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert ready.exists(), "the writer never started"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous, complete content"
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["ready", "weights.bin"]  # no partial target under any visible name
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers and all(is_temp_file(p) for p in leftovers) and leftovers[0].stat().st_size >= 9 * 65536
    assert sorted(remove_temp_files(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "weights.bin"]


def test_exception_mid_file_leaves_previous_target_and_no_temp(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_output_files_get_the_umask_mode(tmp_path, mask):
    """mkstemp makes 0600 files; an output must get 0o666 & ~umask like any file the user writes."""
    before = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "out.json", "{}")
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(before)
    for name in ("out.json", "model.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_temp_names_are_recognised_exactly(tmp_path):
    with atomic_path(tmp_path / "latest") as tmp:
        assert is_temp_file(tmp)
        with atomic_path(tmp_path / "clip.mp4") as tmp2:
            assert is_temp_file(tmp2) and tmp2.suffix == ".mp4"
            tmp2.write_bytes(b"")
        tmp.write_text("x")
    for name in ("latest", ".tmp-step-0000001", "step-0000001", ".hidden", "a.tmp", ".x.abc.tmp"):
        assert not is_temp_file(tmp_path / name), name
