"""Mask overlays for people: actor and target outlined in different colours over frames upscaled to a legible size,
with a legend band (roles, expression, answer) under each frame, written as GIF or MP4."""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

ACTOR_RGB = (255, 60, 60)
TARGET_RGB = (40, 140, 255)
LEGEND_BG = (24, 24, 24)
LEGEND_FG = (235, 235, 235)
LEGEND_DIM = (150, 150, 150)
MIN_SIDE = 256
#: lines each of the expression and the answer may take in the legend before the rest is cut with "..."
MAX_TEXT_LINES = 3

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def upscale_factor(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The integer factor that brings the short side to at least ``min_side`` (1 for frames already that large)."""
    short = min(height, width)
    return max(1, -(-min_side // short)) if short > 0 else 1


def overlay_frames(frames: np.ndarray, actor: np.ndarray, target: np.ndarray | None = None,
                   alpha: float = 0.25, *, expression: str | None = None, answer: str | None = None,
                   answer_label: str = "answer", frame_names: Sequence[str] | None = None,
                   min_side: int = MIN_SIDE) -> np.ndarray:
    """(T, H', W', 3) uint8 frames, upscaled and outlined (actor red, target blue), a legend band below each."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    for masks in (actor, target):
        if masks is not None and masks.shape != frames.shape[:3]:
            raise ValueError(f"masks {masks.shape} do not match frames {frames.shape[:3]}")
    n, h, w = frames.shape[:3]
    if frame_names is not None and len(frame_names) != n:
        raise ValueError(f"{len(frame_names)} frame names for {n} frames")
    k = upscale_factor(h, w, min_side)
    # Outline width grows with the picture but never past one source pixel, so it stays on the mask's own edge.
    thickness = min(k, max(2, round(min(h, w) * k / 128))) if k > 1 else max(1, round(min(h, w) / 160))
    style = _LegendStyle.for_width(w * k)
    legend = _legend_lines(style, w * k, expression, answer, answer_label)
    out = []
    for t in range(n):
        img = _upscale(frames[t].astype(np.uint8), k)
        for masks, colour in ((actor, ACTOR_RGB), (target, TARGET_RGB)):
            if masks is not None:
                _draw_role(img, _upscale(masks[t].astype(bool), k), colour, alpha, thickness)
        label = frame_names[t] if frame_names is not None else f"{t + 1}/{n}"
        band = _render_legend(style, w * k, legend, target is not None, f"frame {label}")
        out.append(np.concatenate([img, band], axis=0))
    return np.stack(out)


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


def _upscale(a: np.ndarray, k: int) -> np.ndarray:
    # Pixel repetition rather than interpolation: small synthetic frames stay crisp and masks keep their exact edges.
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def _draw_role(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float,
               thickness: int) -> None:
    if not mask.any():
        return
    if alpha > 0:
        img[mask] = ((1 - alpha) * img[mask] + alpha * np.asarray(colour, np.float32)).round().clip(0, 255)
    # The outline is the mask's inner rim: it never covers a pixel outside the mask, and a mask cut by the frame
    # edge is still closed there (the zero padding counts as background).
    padded = np.pad(mask.astype(np.uint8), thickness)
    inner = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=thickness)[thickness:-thickness,
                                                                              thickness:-thickness]
    img[mask & ~inner.astype(bool)] = colour


class _LegendStyle:
    def __init__(self, scale: float, weight: int, pad: int):
        self.scale, self.weight, self.pad = scale, weight, pad
        (_, cap), base = cv2.getTextSize("Ag", _FONT, scale, weight)
        self.ascent, self.line = cap, cap + base + pad

    @classmethod
    def for_width(cls, width: int) -> _LegendStyle:
        # Hershey text under ~0.4 turns to mush; above 1.0 it only wastes band height on large frames.
        scale = float(np.clip(width / 640, 0.4, 1.0))
        return cls(scale, 1 if scale < 0.8 else 2, max(4, round(10 * scale)))

    def width(self, text: str) -> int:
        return cv2.getTextSize(text, _FONT, self.scale, self.weight)[0][0]


def _ascii(text: str) -> str:
    # Hershey fonts only cover ASCII: fold accents away rather than print "?" for every byte of a letter.
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(folded.split())


def _wrap(style: _LegendStyle, text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        # A word wider than the band (a long name, a URL) is split rather than let run off the edge.
        while len(word) > 1 and style.width(word) > width:
            cut = max([i for i in range(1, len(word)) if style.width(word[:i]) <= width], default=1)
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        trial = f"{current} {word}" if current else word
        if style.width(trial) <= width:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > MAX_TEXT_LINES:
        last = lines[MAX_TEXT_LINES - 1]
        while last and style.width(last + "...") > width:
            last = last[:-1]
        lines = lines[:MAX_TEXT_LINES - 1] + [last.rstrip() + "..."]
    return lines


def _legend_lines(style: _LegendStyle, width: int, expression: str | None, answer: str | None,
                  answer_label: str) -> list[str]:
    lines = []
    for label, text in (("expression", expression), (answer_label, answer)):
        if text is not None:
            lines += _wrap(style, f"{label}: {_ascii(text) or '(empty)'}", width - 2 * style.pad)
    return lines


def _render_legend(style: _LegendStyle, width: int, lines: list[str], has_target: bool, frame_label: str) -> np.ndarray:
    height = style.pad + style.line * (1 + len(lines))
    band = np.empty((height, width, 3), np.uint8)
    band[:] = LEGEND_BG
    x, y = style.pad, style.pad + style.ascent
    box = style.ascent
    for role, colour, present in (("actor", ACTOR_RGB, True), ("target", TARGET_RGB, has_target)):
        if present:
            cv2.rectangle(band, (x, y - box), (x + box, y), colour, -1)
            text = role
        else:
            # No target track: an empty grey box, so the target colour appears nowhere in this picture.
            cv2.rectangle(band, (x, y - box), (x + box, y), LEGEND_DIM, 1)
            text = f"{role}: none"
        x += box + style.pad
        cv2.putText(band, text, (x, y), _FONT, style.scale, LEGEND_FG if present else LEGEND_DIM, style.weight,
                    cv2.LINE_AA)
        x += style.width(text) + 2 * style.pad
    frame_label = _ascii(frame_label)
    fx = width - style.pad - style.width(frame_label)
    if fx >= x:  # on a narrow band the roles matter more than the frame label
        cv2.putText(band, frame_label, (fx, y), _FONT, style.scale, LEGEND_DIM, style.weight, cv2.LINE_AA)
    for i, line in enumerate(lines, start=1):
        cv2.putText(band, line, (style.pad, y + i * style.line), _FONT, style.scale, LEGEND_FG, style.weight,
                    cv2.LINE_AA)
    return band
