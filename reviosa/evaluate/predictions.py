"""The prediction layout the evaluator reads and every predictor writes.

``<pred_dir>/<video>/<exp_id>/actor/<frame>.png`` and, for expressions with a target,
``<pred_dir>/<video>/<exp_id>/target/<frame>.png``: plain 8-bit single-channel PNGs, 0 = background,
any non-zero value = foreground (we write 0/255), at the video's original resolution, one file per frame
named as in ``meta_expressions.json``.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from reviosa.data.atomic import atomic_write_bytes
from reviosa.data.names import UnsafeName, inside

ROLES = ("actor", "target")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def role_dir(pred_dir: str | os.PathLike, video: str, exp_id: str, role: str) -> Path:
    """Folder of one role's masks for one expression."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    # Names come from the data: each must stay one folder level inside pred_dir, links included.
    inside(pred_dir, video, what="video name")
    return inside(pred_dir, video, exp_id, role, what="expression id")


def frame_png(folder: str | os.PathLike, frame: str) -> Path:
    """``folder/<frame>.png``, resolved and checked to stay inside ``folder``."""
    return inside(folder, f"{frame}.png", what="frame name")


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
        write_mask_png(frame_png(folder, name), m)


def read_mask_png(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a prediction PNG as a bool (H, W) mask: any non-zero value of the stored sample is foreground.

    Palette PNGs are read by index (not luminance) and RGB PNGs by any non-zero channel, so a mask is never
    lost to colour conversion. With ``size`` (H, W), a PNG of another size raises :class:`PredictionError` from its
    header, before any pixel is decoded (a 15000 x 15000 file costs nothing).
    """
    if size is not None:
        # PNG's first chunk is IHDR (width, height): read it here, before PIL's decompression-bomb check fires.
        with open(path, "rb") as fh:
            head = fh.read(24)
        if len(head) == 24 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            _check_size(path, (height, width), size)
    try:
        with warnings.catch_warnings():
            # The size is checked against the video's; PIL's bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if size is not None:
                    _check_size(path, (im.height, im.width), size)
                arr = np.asarray(im)
    except Image.DecompressionBombError as err:
        raise PredictionError(path, f"image is too large to decode ({err})") from None
    if arr.ndim == 3:
        arr = arr.any(axis=-1)
    return arr != 0


def _check_size(path: str | os.PathLike, got: tuple[int, int], size: tuple[int, int]) -> None:
    if tuple(got) != tuple(size):
        raise PredictionError(path, f"mask is {got[0]}x{got[1]} (HxW) but the video is {size[0]}x{size[1]}; "
                              "predictions must be at the original resolution")


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
    try:
        folder = role_dir(pred_dir, video, exp_id, role)
    except UnsafeName as err:
        raise PredictionError(pred_dir, str(err)) from None
    if not folder.is_dir():
        return None, list(frames)
    masks = np.zeros((len(frames), *size), dtype=bool)
    missing = []
    for t, name in enumerate(frames):
        try:
            path = frame_png(folder, name)
        except UnsafeName as err:
            raise PredictionError(folder, str(err)) from None
        try:
            m = read_mask_png(path, size)
        except FileNotFoundError:
            missing.append(name)
            continue
        except PredictionError:
            raise
        # PIL.UnidentifiedImageError is an OSError; a broken chunk can raise SyntaxError, a bad header ValueError
        except (OSError, SyntaxError, ValueError) as err:
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
        try:
            return inside(self.path, video, what="video name").is_dir()
        except UnsafeName as err:
            raise PredictionError(self.path, str(err)) from None

    def read_track(self, video: str, exp_id: str, role: str, frames: list[str],
                   size: tuple[int, int]) -> tuple[np.ndarray | None, list[str]]:
        """See :func:`read_track`."""
        return read_track(self.path, video, exp_id, role, frames, size)


def answer_form_accuracy(dataset, pred_dir: str | os.PathLike) -> float | None:
    """Share of a split's expressions whose prediction has a target track exactly when the expression has a target
    (the model answered with ``[SEG_TAR]`` where it should); None when ``pred_dir`` holds no PNG track (nothing
    predicted, or official ``results.json`` predictions)."""
    right = seen = 0
    for video in dataset.videos.values():
        for exp in video.expressions.values():
            if not role_dir(pred_dir, video.name, exp.exp_id, "actor").is_dir():
                continue
            seen += 1
            right += role_dir(pred_dir, video.name, exp.exp_id, "target").is_dir() == exp.has_target
    return right / seen if seen else None
