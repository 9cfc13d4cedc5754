"""Frames for the vision stages: one object highlighted (stage 1) or every object outlined and labelled (stage 3)."""

from __future__ import annotations

import base64

import cv2
import numpy as np

#: distinct RGB outline colours, cycled by object index
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64), (64, 160, 255), (80, 220, 80), (255, 200, 0), (220, 80, 255), (0, 230, 230), (255, 140, 0),
    (255, 105, 180), (160, 160, 255))
HIGHLIGHT = (255, 40, 40)


def sample_indices(present: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` frame indices spread evenly over the frames where ``present`` is true (all frames if none)."""
    idx = np.flatnonzero(present) if present.any() else np.arange(len(present))
    if len(idx) <= k:
        return [int(i) for i in idx]
    return [int(idx[round(j)]) for j in np.linspace(0, len(idx) - 1, k)]


def highlight(frame: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = HIGHLIGHT) -> np.ndarray:
    """Tint the object and draw its outline; the rest of the frame is dimmed so the object stands out."""
    out = (frame.astype(np.float32) * 0.55).astype(np.uint8)
    out[mask] = frame[mask]
    tint = np.zeros_like(frame)
    tint[:] = color
    out[mask] = (0.7 * out[mask] + 0.3 * tint[mask]).astype(np.uint8)
    _outline(out, mask, color)
    return out


def label_objects(frame: np.ndarray, masks: dict[int, np.ndarray]) -> np.ndarray:
    """Outline every object in its palette colour and write ``[index]`` at its centre."""
    out = frame.copy()
    scale = max(0.35, min(frame.shape[:2]) / 400)
    for index, mask in sorted(masks.items()):
        if not mask.any():
            continue
        color = PALETTE[index % len(PALETTE)]
        _outline(out, mask, color)
        ys, xs = np.nonzero(mask)
        org = (int(xs.mean()) - int(12 * scale), int(ys.mean()) + int(6 * scale))
        cv2.putText(out, f"[{index}]", org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, f"[{index}]", org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return out


def _outline(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, color, max(1, min(img.shape[:2]) // 160))


def fit(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most ``max_side`` (never upscale)."""
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> bytes:
    """RGB image -> JPEG bytes (deterministic, so identical frames give identical cache keys)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def image_part(img: np.ndarray) -> dict:
    """An OpenAI chat content part carrying the image as a data URL."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(img)).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}
