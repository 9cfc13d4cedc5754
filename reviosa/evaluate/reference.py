"""A per-frame cv2 implementation of the official DAVIS/MeViS J and F rules, kept as the yardstick.

It is what one would write with numpy and cv2 to evaluate frame by frame, made as fast as that allows: the
masks as 0/1 ``uint8`` (a view, no copy, for bool input); the boundary map from XORs of shifted slices; the
sizes and intersections with ``cv2.countNonZero`` / ``cv2.bitwise_and``; and the tolerance as the official
code does it, ``cv2.dilate`` of each boundary map with the uint8 disk kernel, over the whole frame (skipped
when a boundary is empty, since F is then decided). :mod:`reviosa.evaluate.metrics` must agree with it bit
for bit; tests and ``benchmarks/metrics_speed.py`` compare the two.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np


def disk_kernel(radius: int) -> np.ndarray:
    """The (2r+1, 2r+1) uint8 disk {(dy, dx): dy² + dx² <= r²}, i.e. ``skimage.morphology.disk(r)``."""
    d = np.arange(-radius, radius + 1)
    return ((d[:, None] ** 2 + d[None, :] ** 2) <= radius * radius).astype(np.uint8)


def reference_radius(bound_th: float, height: int, width: int) -> int:
    """Tolerance radius: ``bound_th`` itself if >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 must be a whole number of pixels, got {bound_th}")
        return int(bound_th)
    return int(math.ceil(bound_th * np.linalg.norm([height, width])))


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary map: a pixel differs from its right, lower or lower-right neighbour inside the image."""
    return _bmap(_binary(mask)).astype(bool)


def reference_j(gt: np.ndarray, pred: np.ndarray) -> float:
    """Region similarity of one (H, W) frame."""
    assert gt.shape == pred.shape, f"shapes differ: {gt.shape} vs {pred.shape}"
    g, p = _binary(gt), _binary(pred)
    inter = cv2.countNonZero(cv2.bitwise_and(g, p))
    union = cv2.countNonZero(g) + cv2.countNonZero(p) - inter
    return 1.0 if union == 0 else inter / union


def reference_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> float:
    """Contour accuracy of one (H, W) frame."""
    assert gt.shape == pred.shape, f"shapes differ: {gt.shape} vs {pred.shape}"
    bg, bp = _bmap(_binary(gt)), _bmap(_binary(pred))
    n_g, n_p = cv2.countNonZero(bg), cv2.countNonZero(bp)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    kernel = _kernel(reference_radius(bound_th, *gt.shape))
    precision = cv2.countNonZero(cv2.bitwise_and(bp, cv2.dilate(bg, kernel))) / float(n_p)
    recall = cv2.countNonZero(cv2.bitwise_and(bg, cv2.dilate(bp, kernel))) / float(n_g)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


@lru_cache(maxsize=16)
def _kernel(radius: int) -> np.ndarray:
    return disk_kernel(radius)


def _binary(mask: np.ndarray) -> np.ndarray:
    # astype(bool) is the official binarisation (NaN and negatives are foreground); bool is viewed, not copied.
    mask = np.asarray(mask)
    return np.ascontiguousarray(mask if mask.dtype == np.bool_ else mask != 0).view(np.uint8)


def _bmap(m: np.ndarray) -> np.ndarray:
    """0/1 uint8 boundary map of a 0/1 uint8 frame.

    With a = "differs from the right neighbour" and d = "differs from the lower neighbour", "differs from the
    lower-right neighbour" is d XOR a(row below), so the map is a | a(row below) | d, where a and d are 0 in
    the last column and row (no neighbour there).
    """
    b = np.zeros(m.shape, dtype=np.uint8)
    if min(m.shape) < 2:
        # cv2 does not take empty slices; a 1-pixel-thin frame only has the in-line test.
        b.reshape(-1)[:-1] = m.reshape(-1)[:-1] ^ m.reshape(-1)[1:]
        return b
    # cv2 writes into the slices of b in place, which is faster than numpy's XOR of uint8 slices.
    cv2.bitwise_xor(m[:, :-1], m[:, 1:], dst=b[:, :-1])
    d = cv2.bitwise_xor(m[:-1], m[1:])
    cv2.bitwise_or(d[:, :-1], b[1:, :-1], dst=d[:, :-1])
    cv2.bitwise_or(b[:-1], d, dst=b[:-1])
    return b
