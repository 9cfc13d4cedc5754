"""The prediction layout the evaluator reads and every predictor writes.

``<pred_dir>/<video>/<exp_id>/actor/<frame>.png`` and, for expressions with a target,
``<pred_dir>/<video>/<exp_id>/target/<frame>.png``: plain 8-bit single-channel PNGs, 0 = background,
any non-zero value = foreground (we write 0/255), at the video's original resolution, one file per frame
named as in ``meta_expressions.json``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from reviosa.data.atomic import atomic_write_bytes
from reviosa.data.names import check_component

ROLES = ("actor", "target")


def role_dir(pred_dir: str | os.PathLike, video: str, exp_id: str, role: str) -> Path:
    """Folder of one role's masks for one expression."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    # Names come from the data: each must stay one folder level inside pred_dir.
    return Path(pred_dir) / check_component(video, "video name") / check_component(exp_id, "expression id") / role


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write one (H, W) mask as an 8-bit 0/255 PNG, atomically."""
    if mask.ndim != 2:
        raise ValueError(f"a mask frame must be 2-D (H, W), got shape {mask.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_track(pred_dir: str | os.PathLike, video: str, exp_id: str, role: str, frames: list[str],
                masks: np.ndarray) -> None:
    """Write a (T, H, W) mask track for one role of one expression."""
    if masks.ndim != 3 or masks.shape[0] != len(frames):
        raise ValueError(f"expected ({len(frames)}, H, W) masks for {video}/{exp_id}/{role}, got {masks.shape}")
    folder = role_dir(pred_dir, video, exp_id, role)
    for name, m in zip(frames, masks):
        write_mask_png(folder / f"{name}.png", m)


def read_mask_png(path: str | os.PathLike) -> np.ndarray:
    """Read a prediction PNG as a bool (H, W) mask: any non-zero value of the stored sample is foreground.

    Palette PNGs are read by index (not luminance) and RGB PNGs by any non-zero channel, so a mask is never
    lost to colour conversion.
    """
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.any(axis=-1)
    return arr != 0


class PredictionError(ValueError):
    """A prediction file cannot be scored (wrong size, unreadable); the message names the file."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path, self.reason = str(path), message
        super().__init__(f"{self.path}: {message}")

    def __reduce__(self):
        # Raised in worker processes: must survive pickling with both arguments.
        return type(self), (self.path, self.reason)


def read_track(pred_dir: str | os.PathLike, video: str, exp_id: str, role: str, frames: list[str],
               size: tuple[int, int]) -> tuple[np.ndarray | None, list[str]]:
    """Read one role's (T, H, W) bool masks and the names of frames with no PNG.

    Returns ``(None, frames)`` when the role folder does not exist. A missing frame reads as an empty mask;
    a PNG of another size than ``size`` raises :class:`PredictionError` (a predictor that forgot to resize
    back must not be scored on a misaligned grid, nor silently zeroed).
    """
    folder = role_dir(pred_dir, video, exp_id, role)
    if not folder.is_dir():
        return None, list(frames)
    masks = np.zeros((len(frames), *size), dtype=bool)
    missing = []
    for t, name in enumerate(frames):
        path = folder / f"{name}.png"
        try:
            m = read_mask_png(path)
        except FileNotFoundError:
            missing.append(name)
            continue
        except OSError as err:  # PIL.UnidentifiedImageError is an OSError
            raise PredictionError(path, f"not a readable PNG ({err})") from None
        if m.shape != tuple(size):
            raise PredictionError(path, f"mask is {m.shape[0]}x{m.shape[1]} (HxW) but the video is "
                                  f"{size[0]}x{size[1]}; predictions must be at the original resolution")
        masks[t] = m
    return masks, missing


class PngPredictions:
    """The PNG prediction folder as a source of tracks (the same interface as official results.json files)."""

    def __init__(self, pred_dir: str | os.PathLike):
        self.path = Path(pred_dir)

    @property
    def description(self) -> str:
        """The folder (for reports)."""
        return str(self.path)

    def has_video(self, video: str) -> bool:
        """Whether the folder has any prediction for ``video``."""
        return (self.path / video).is_dir()

    def read_track(self, video: str, exp_id: str, role: str, frames: list[str],
                   size: tuple[int, int]) -> tuple[np.ndarray | None, list[str]]:
        """See :func:`read_track`."""
        return read_track(self.path, video, exp_id, role, frames, size)
