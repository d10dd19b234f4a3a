"""Video and image-sequence I/O shared by data, rollout and evaluation.

Frames are uint8 numpy arrays of shape `(frames, height, width, 3)` (RGB) unless stated otherwise.
mp4 goes through PyAV (libx264); GIF through Pillow. Writers are atomic.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

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


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Write `(frames, height, width, 3)` uint8 RGB to an H.264 mp4, atomically.

    Odd sizes are padded by one pixel (yuv420p needs even sides); readers crop back only if told.
    """
    import av

    frames = _check_frames(frames, str(path))
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even height and width, got {h}x{w}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            # no B-frames / lookahead / mb-tree: libx264 is then deterministic on small frames (see data.lerobot)
            stream.options = {
                "crf": str(crf),
                "preset": "veryfast",
                "bf": "0",
                "threads": "1",
                "x264-params": "rc-lookahead=0:no-mbtree=1",
            }
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def read_video(path: str | Path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, float]:
    """Decode frames `[start, stop)` of a video. Returns `((frames, height, width, 3) uint8, fps)`.

    Raises ValueError naming the file when it cannot be decoded or holds fewer frames than asked.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.base_rate or 0.0)
            for i, frame in enumerate(container.decode(stream)):
                if i < start:
                    continue
                if stop is not None and i >= stop:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot decode video ({exc})") from exc
    if stop is not None and len(out) < stop - start:
        raise ValueError(f"{path}: asked for frames [{start}, {stop}) but the video has only {start + len(out)}")
    if not out:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(out), fps


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write `(frames, height, width, 3)` uint8 RGB to an animated GIF, atomically."""
    from PIL import Image

    frames = _check_frames(frames, str(path))
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def write_frames(directory: str | Path, frames: np.ndarray, suffix: str = ".png") -> list[Path]:
    """Write frames as `000000.png, 000001.png, ...` in `directory` (each atomically)."""
    from PIL import Image

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
    from PIL import Image, UnidentifiedImageError

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
