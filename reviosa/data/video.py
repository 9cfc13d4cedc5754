"""Video and image codecs: decode and encode video files (PyAV), read and write single images. No dataset logic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from reviosa.data.atomic import atomic_write_bytes


class VideoDecodeError(ValueError):
    """A video file or frame cannot be decoded; the message names the file."""


def decode_video(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames ``start <= index < stop`` of a video file, in order."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({err})") from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if stop is not None and index >= stop:
                    break
                if index >= start:
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:
            raise VideoDecodeError(f"{path}: decoding failed ({err})") from None


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames of a video file (decodes when the container has no count)."""
    import av

    try:
        with av.open(str(path)) as container:
            n = container.streams.video[0].frames
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({err})") from None
    return n if n > 0 else sum(1 for _ in decode_video(path))


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 10) -> None:
    """Encode (T, H, W, 3) uint8 frames as an H.264/MPEG-4 video file (even sizes required by most codecs)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    with av.open(str(tmp), mode="w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def write_jpeg(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """Write one RGB frame as JPEG, atomically."""
    import io

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    atomic_write_bytes(path, buf.getvalue())


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError) as err:
        raise VideoDecodeError(f"{path}: cannot decode image ({err})") from None
