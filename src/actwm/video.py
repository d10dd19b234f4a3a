"""Video and image-sequence I/O shared by data, rollout and evaluation.

Frames are uint8 numpy arrays of shape `(frames, height, width, 3)` (RGB) unless stated otherwise.
mp4 goes through PyAV (libx264); GIF through Pillow. Writers are atomic. This module is the one home of mp4
encoding and decoding in actwm.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from actwm.io import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: frames must be (frames, height, width, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{what}: frames must be uint8, got {frames.dtype}")
    return frames


# libx264 settings shared by every mp4 actwm writes. B-frames / lookahead / mb-tree made libx264's output vary
# from run to run on small frames (measured at 32-64 px); without them it is deterministic, so a resumed
# dataset write equals an uninterrupted one byte for byte.
_X264_OPTIONS = {"preset": "veryfast", "threads": "1", "bf": "0", "x264-params": "rc-lookahead=0:no-mbtree=1"}


class Mp4Writer:
    """Incremental H.264 writer of one mp4 (frames appended in calls to `write`); atomic on `close()`.

    Args:
        path: destination; nothing appears there until `close()` succeeds.
        fps: frame rate (stored as a rational with denominator <= 1001).
        height, width: frame size (even for yuv420p).
        crf: quality (0 = lossless coding); gop: keyframe interval (None: libx264's default).
        pix_fmt: "yuv420p" or "yuv444p".
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        height: int,
        width: int,
        *,
        crf: int = 18,
        gop: int | None = None,
        pix_fmt: str = "yuv420p",
    ) -> None:
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
            options = {"crf": str(crf), **_X264_OPTIONS}
            if gop is not None:
                options["g"] = str(gop)
            self._stream.options = options
            self._stream.codec_context.time_base = 1 / rate
        except BaseException:
            self._ctx.__exit__(RuntimeError, RuntimeError("open failed"), None)
            raise
        self._n = 0

    def write(self, frames: np.ndarray) -> None:
        """Append `(frames, height, width, 3)` uint8 RGB frames."""
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self._n
            self._n += 1
            for packet in self._stream.encode(vf):
                self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the file being written (its temp file is removed)."""
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Write `(frames, height, width, 3)` uint8 RGB to an H.264 yuv420p mp4, atomically (even sides needed)."""
    frames = _check_frames(frames, str(path))
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even height and width, got {h}x{w}")
    writer = Mp4Writer(path, fps, h, w, crf=crf)
    try:
        writer.write(frames)
    except BaseException:
        writer.abort()
        raise
    writer.close()


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says, without decoding: frame count (0 if unknown), rate, size."""

    frames: int
    fps: float
    height: int
    width: int


def video_info(path: str | Path) -> VideoInfo:
    """Open a video and read its stream metadata (no decoding). Raises naming the file when it cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            s = container.streams.video[0]
            fps = float(s.average_rate or s.base_rate or 0.0)
            n = int(s.frames or 0)
            if not n and s.duration is not None and fps:
                n = int(round(float(s.duration * s.time_base) * fps))
            return VideoInfo(frames=n, fps=fps, height=int(s.height), width=int(s.width))
    except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot open video ({exc})") from exc


def iter_video(
    path: str | Path, start: int = 0, stop: int | None = None, *, fps: float | None = None
) -> Iterator[np.ndarray]:
    """Decode frames `[start, stop)` of a video one at a time, as `(height, width, 3)` uint8 RGB.

    Frame `i` is the one shown at time `i / fps` after the stream's start (`fps`: the stream's average rate
    unless given, e.g. a LeRobot store's `info.json` fps). For `start > 0` the decoder seeks to the keyframe
    before it; the first decoded frame's index comes from its timestamp, later ones are counted.
    Raises FileNotFoundError / ValueError naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"{path}: bad frame range [{start}, {stop})")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(fps or stream.average_rate or stream.base_rate or 0.0)
            tb, t0 = float(stream.time_base), float(stream.start_time or 0) * float(stream.time_base)
            idx: int | None = 0
            if start > 0 and rate > 0:
                container.seek(int((start / rate + t0) / tb), stream=stream, backward=True, any_frame=False)
                idx = None  # known from the first frame's timestamp
            for frame in container.decode(stream):
                if idx is None:
                    if frame.pts is None:
                        raise ValueError(f"{path}: frame without timestamp after a seek")
                    idx = int(round((float(frame.pts) * tb - t0) * rate))
                if stop is not None and idx >= stop:
                    break
                if idx >= start:
                    yield frame.to_ndarray(format="rgb24")
                idx += 1
    except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot decode video ({exc})") from exc


def read_video(
    path: str | Path, start: int = 0, stop: int | None = None, *, fps: float | None = None
) -> tuple[np.ndarray, float]:
    """Decode frames `[start, stop)` of a video (see `iter_video`). Returns `((frames, height, width, 3) uint8,
    fps)`. Raises ValueError naming the file when it holds fewer frames than asked."""
    out = list(iter_video(path, start, stop, fps=fps))
    if stop is not None and len(out) < stop - start:
        raise ValueError(f"{path}: asked for frames [{start}, {stop}) but decoded only {len(out)} of them")
    if not out:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(out), float(fps or video_info(path).fps)


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write `(frames, height, width, 3)` uint8 RGB to an animated GIF, atomically."""
    frames = _check_frames(frames, str(path))
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def write_frames(directory: str | Path, frames: np.ndarray, suffix: str = ".png") -> list[Path]:
    """Write frames as `000000.png, 000001.png, ...` in `directory` (each atomically)."""
    frames = _check_frames(frames, str(directory))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        p = directory / f"{i:06d}{suffix}"
        with atomic_path(p) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG" if suffix == ".png" else "JPEG")
        paths.append(p)
    return paths


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as `(height, width, 3)` uint8 RGB; a truncated or corrupt file raises ValueError naming it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from exc


def read_frames(path: str | Path) -> np.ndarray:
    """Read a sequence from a folder of images (sorted by name) or a video file.

    Returns `(frames, height, width, 3)` uint8.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: folder holds no PNG/JPG frames")
        frames = [read_image(p) for p in files]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(f"{path}: frames differ in size: {sorted(shapes)}")
        return np.stack(frames)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path)[0]
    raise ValueError(f"{path}: not a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)})")
