"""A plain per-frame implementation of the official DAVIS/MeViS J and F rules, kept as the yardstick.

It follows the rules literally: boundary map by comparing each pixel with its right, lower and lower-right
neighbours, dilation with ``cv2.dilate`` and a disk kernel, then counting. The fast implementation in
:mod:`reviosa.evaluate.metrics` must agree with it bit for bit; tests and ``benchmarks/metrics_speed.py``
compare the two.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def disk_kernel(radius: int) -> np.ndarray:
    """The (2r+1, 2r+1) uint8 disk {(dy, dx): dy² + dx² <= r²}."""
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
    seg = mask.astype(bool)
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def reference_j(gt: np.ndarray, pred: np.ndarray) -> float:
    """Region similarity of one (H, W) frame."""
    assert gt.shape == pred.shape, f"shapes differ: {gt.shape} vs {pred.shape}"
    g, p = gt.astype(bool), pred.astype(bool)
    inter = np.sum(g & p)
    union = np.sum(g | p)
    return 1.0 if union == 0 else float(inter / union)


def reference_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> float:
    """Contour accuracy of one (H, W) frame."""
    assert gt.shape == pred.shape, f"shapes differ: {gt.shape} vs {pred.shape}"
    r = reference_radius(bound_th, *gt.shape)
    bg = reference_boundary(gt)
    bp = reference_boundary(pred)
    kernel = disk_kernel(r)
    bg_dil = cv2.dilate(bg.astype(np.uint8), kernel)
    bp_dil = cv2.dilate(bp.astype(np.uint8), kernel)
    n_p, n_g = np.sum(bp), np.sum(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    precision = np.sum(bp & (bg_dil > 0)) / float(n_p)
    recall = np.sum(bg & (bp_dil > 0)) / float(n_g)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))
