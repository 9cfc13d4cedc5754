"""Mask overlays for people: actor and target in different colours, written as GIF or MP4."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

ACTOR_RGB = (255, 60, 60)
TARGET_RGB = (40, 140, 255)


def overlay_frames(frames: np.ndarray, actor: np.ndarray, target: np.ndarray | None = None,
                   alpha: float = 0.5) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with the actor tinted red and the target blue."""
    out = np.asarray(frames).astype(np.float32).copy()
    for masks, colour in ((actor, ACTOR_RGB), (target, TARGET_RGB)):
        if masks is None:
            continue
        if masks.shape != out.shape[:3]:
            raise ValueError(f"masks {masks.shape} do not match frames {out.shape[:3]}")
        m = masks.astype(bool)[..., None]
        out = np.where(m, (1 - alpha) * out + alpha * np.asarray(colour, np.float32), out)
    return out.round().clip(0, 255).astype(np.uint8)


def write_overlay(path: str | os.PathLike, frames: np.ndarray, fps: int = 10) -> Path:
    """Write overlay frames as ``.gif`` (Pillow) or ``.mp4`` (PyAV), atomically."""
    from reviosa.data.atomic import atomic_write_bytes

    path = Path(path)
    if path.suffix == ".gif":
        from PIL import Image

        buf = io.BytesIO()
        images = [Image.fromarray(f) for f in frames]
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".mp4":
        from reviosa.data.video import write_video

        even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
        write_video(path, even, fps=fps)
    else:
        raise ValueError(f"{path}: overlay must be .gif or .mp4")
    return path
