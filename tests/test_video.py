"""actwm.video: the one home of mp4 encoding and decoding."""

from __future__ import annotations

import numpy as np
import pytest

from actwm.video import Mp4Writer, iter_video, read_video, video_info, write_mp4


def _staircase(t: int, h: int = 32, w: int = 32) -> np.ndarray:
    """(t, h, w, 3) uint8 smooth frames whose brightness rises 6 per frame (a frame's index is recoverable)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 40 + 20 * (1 + np.sin(xx / 6 + yy / 9))
    return np.clip(np.stack([np.stack([base + 6 * k + 5 * c for c in range(3)], -1) for k in range(t)]), 0, 255).astype(
        np.uint8
    )


def _per_frame_error(decoded: np.ndarray, written: np.ndarray) -> np.ndarray:
    return np.abs(decoded.astype(float) - written).mean((1, 2, 3))


def test_ranges_decode_the_written_frames(tmp_path):
    """Ranges far from a keyframe (gop 4) decode exactly the frames written there, not their neighbours."""
    frames = _staircase(23)
    path = tmp_path / "v.mp4"
    writer = Mp4Writer(path, 5.0, 32, 32, crf=0, gop=4, pix_fmt="yuv444p")
    writer.write(frames[:10])
    writer.write(frames[10:])  # appended in two calls, like a store holding two episodes
    writer.close()
    whole, fps = read_video(path)
    assert fps == 5.0 and whole.shape == frames.shape
    assert _per_frame_error(whole, frames).max() < 1.5
    for start, stop in ((0, 3), (7, 13), (10, 23), (22, 23)):
        part, _ = read_video(path, start, stop, fps=5.0)
        err = _per_frame_error(part, frames[start:stop])
        assert part.shape[0] == stop - start and err.max() < 1.5, (start, stop, err.round(2))


def test_write_mp4_round_trip_and_errors(tmp_path):
    frames = _staircase(6)
    write_mp4(tmp_path / "a.mp4", frames, fps=10)
    back, fps = read_video(tmp_path / "a.mp4")
    assert fps == 10.0 and _per_frame_error(back, frames).max() < 3.0
    with pytest.raises(ValueError, match=r"a.mp4: asked for frames \[2, 9\) but decoded only 4"):
        read_video(tmp_path / "a.mp4", 2, 9)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "a.mp4").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.mp4"):
        read_video(tmp_path / "cut.mp4")
    with pytest.raises(ValueError, match="even height"):
        write_mp4(tmp_path / "odd.mp4", _staircase(2, 31, 32), fps=5)


def test_aborted_writer_leaves_nothing(tmp_path):
    writer = Mp4Writer(tmp_path / "v.mp4", 5.0, 32, 32)
    writer.write(_staircase(3))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_video_info_reads_the_container(tmp_path):
    write_mp4(tmp_path / "a.mp4", _staircase(7, 16, 24), fps=4)
    info = video_info(tmp_path / "a.mp4")
    assert (info.frames, info.fps, info.height, info.width) == (7, 4.0, 16, 24)
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "a.mp4").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.mp4: cannot open video"):
        video_info(tmp_path / "cut.mp4")
    frames = list(iter_video(tmp_path / "a.mp4", 2, 5))
    assert len(frames) == 3 and frames[0].shape == (16, 24, 3)
