"""J (region similarity) and F (contour accuracy) exactly as the official DAVIS-2017 / MeViS code defines them.

Rules (every one is tested against :mod:`reviosa.evaluate.reference`, a literal ``cv2.dilate`` port):

* any non-zero value is foreground (1, 255, 0.2, negative, NaN); no threshold, no resizing; GT and
  prediction of different shapes raise ``AssertionError`` like the official code, so callers port unchanged;
* J = |G ∧ P| / |G ∨ P|, and 1 when both are empty;
* the boundary of a mask marks pixels that differ from their right, lower or lower-right neighbour inside
  the image (the image border is never a boundary, so a full-frame mask has none);
* F is the F-measure of boundary precision/recall with tolerance radius ``r = ceil(bound_th · √(H²+W²))``
  (``bound_th`` itself when >= 1), matching within Euclidean distance ``<= r``; both boundaries empty → 1,
  one empty → 0.

Speed: a chunk of frames is cut to the bounding box of its foreground and packed to 64 pixels per ``uint64``
word. Boundaries are XORs of shifted words; J and the boundary sizes are popcounts. The disk dilation uses
that the disk is a union of horizontal runs of half-width w(dy) = isqrt(r² − dy²): the few distinct
horizontal dilations are built by doubling shifts and OR-ed in at row offsets, instead of sliding a
(2r+1)² kernel. ``benchmarks/metrics_speed.py`` measures the speed-up against :mod:`reviosa.evaluate.reference`.
"""

from __future__ import annotations

import math
from math import isqrt

import numpy as np

#: pixels per chunk of frames: enough frames to amortise numpy's per-call cost, few enough to stay in cache
_CHUNK_PIXELS = 1 << 23
_ONE = np.uint64(1)
_SIXTY_THREE = np.uint64(63)


def boundary_radius(bound_th: float, height: int, width: int) -> int:
    """Tolerance radius in pixels for an (H, W) frame: ``bound_th`` if >= 1, else ceil(bound_th·diagonal)."""
    if not bound_th >= 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            # The official code would build an even-sized, off-centre kernel; no evaluator uses that.
            raise ValueError(f"bound_th >= 1 is a radius in pixels and must be whole, got {bound_th}")
        return int(bound_th)
    # sqrt of the exact integer, like np.linalg.norm(shape): keeps 75x100 -> exactly 1.0 -> r = 1
    return int(math.ceil(bound_th * math.sqrt(height * height + width * width)))


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> float | np.ndarray:
    """J of an (H, W) frame (a float) or of each frame of a (T, ..., H, W) stack (a float64 array)."""
    g, p, squeeze = _prepare(gt, pred, allow_nd=True)
    lead = g.shape[:-2]
    j, _ = _scores(g.reshape(-1, *g.shape[-2:]), p.reshape(-1, *p.shape[-2:]), None)
    return float(j[0]) if squeeze else j.reshape(lead)


def contour_accuracy(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> float | np.ndarray:
    """F of an (H, W) frame (a float) or of each frame of a (T, H, W) stack (a float64 array)."""
    g, p, squeeze = _prepare(gt, pred, allow_nd=False)
    _, f = _scores(g, p, boundary_radius(bound_th, g.shape[-2], g.shape[-1]), need_j=False)
    return float(f[0]) if squeeze else f


def jf(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (J, F) float64 arrays of a (T, H, W) stack (or length-1 arrays for an (H, W) frame)."""
    g, p, _ = _prepare(gt, pred, allow_nd=False)
    j, f = _scores(g, p, boundary_radius(bound_th, g.shape[-2], g.shape[-1]))
    return j, f


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The (H, W) bool boundary map of one frame (pixels whose right/lower/lower-right neighbour differs)."""
    m, _, _ = _prepare(mask, mask, allow_nd=False)
    if m.ndim != 3 or len(m) != 1:
        raise ValueError(f"boundary_map takes one (H, W) frame, got shape {np.shape(mask)}")
    w = m.shape[-1]
    b = _boundary(_pack(m, -(-w // 64) + 1), w)
    return np.unpackbits(b.view(np.uint8), axis=-1, count=w, bitorder="little")[0].astype(bool)


# ---------------------------------------------------------------------- input handling
def _prepare(gt: np.ndarray, pred: np.ndarray, *, allow_nd: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    # AssertionError, as in the official code, so ported callers that catch it keep working.
    assert gt.shape == pred.shape, f"GT and prediction shapes differ: {gt.shape} vs {pred.shape}"
    if gt.ndim < 2 or (gt.ndim > 3 and not allow_nd):
        raise ValueError(f"expected an (H, W) frame or a (T, H, W) stack, got shape {gt.shape}")
    if gt.shape[-1] == 0 or gt.shape[-2] == 0:
        raise ValueError(f"frames must have at least one pixel, got shape {gt.shape}")
    squeeze = gt.ndim == 2
    if squeeze:
        gt, pred = gt[None], pred[None]
    return _as_bool(gt), _as_bool(pred), squeeze


def _as_bool(x: np.ndarray) -> np.ndarray:
    # astype(bool) is the official binarisation: NaN and negatives are foreground.
    return x if x.dtype == np.bool_ else x.astype(bool)


def _scores(g: np.ndarray, p: np.ndarray, r: int | None, *, need_j: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J (if ``need_j``) and F (if ``r`` is given) of (T, H, W) bool stacks, chunk by chunk.

    Each chunk is cut to the bounding box of its foreground plus one empty row/column on every side that
    exists. Nothing outside holds a boundary pixel, and the crop's last row/column obeys the same "no lower /
    right neighbour" rule as the image's, because it is either the image's own or empty with empty neighbours.
    """
    t, h, w = g.shape
    j = np.ones(t, dtype=np.float64)
    f = np.ones(t, dtype=np.float64)
    # Spare bits after each row: >= 1 so the last column's right neighbour is padding, >= 2r for the dilation.
    spare = max(1, 2 * (r or 0))
    step = max(1, _CHUNK_PIXELS // (h * w))
    for start in range(0, t, step):
        sl = slice(start, min(t, start + step))
        gc, pc = g[sl], p[sl]
        union = np.logical_or.reduce(gc, axis=0)
        union |= np.logical_or.reduce(pc, axis=0)
        rows = np.flatnonzero(union.any(axis=1))
        if len(rows) == 0:
            continue  # every frame empty in both: J = F = 1
        cols = np.flatnonzero(union[rows[0]: rows[-1] + 1].any(axis=0))
        y0, y1 = max(0, rows[0] - 1), min(h, rows[-1] + 2)
        x0, x1 = max(0, cols[0] - 1), min(w, cols[-1] + 2)
        nwp = -(-(x1 - x0 + spare) // 64)
        pg = _pack(gc[:, y0:y1, x0:x1], nwp)
        pp = _pack(pc[:, y0:y1, x0:x1], nwp)
        if need_j:
            j[sl] = _region(pg, pp)
        if r is not None:
            f[sl] = _contour(pg, pp, x1 - x0, r)
    return j, f


def _pack(m: np.ndarray, nwp: int) -> np.ndarray:
    """Pack (n, H, W) bools into little-endian bit order: pixel x is bit x % 64 of word x // 64."""
    n, h, _ = m.shape
    packed = np.packbits(m, axis=-1, bitorder="little")
    buf = np.zeros((n, h, nwp * 8), dtype=np.uint8)
    buf[:, :, : packed.shape[-1]] = packed
    return buf.view("<u8")


def _popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).reshape(len(words), -1).sum(axis=1, dtype=np.int64)


# ---------------------------------------------------------------------- J
def _region(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    inter = _popcount(g & p)
    union = _popcount(g) + _popcount(p) - inter
    out = np.ones(len(g), dtype=np.float64)
    nz = union != 0
    out[nz] = inter[nz] / union[nz]
    return out


# ---------------------------------------------------------------------- F
def _boundary(m: np.ndarray, width: int) -> np.ndarray:
    """Packed boundary map of packed masks (n, H, nwp): right/lower/lower-right neighbour differs."""
    n, h, nwp = m.shape
    flat = m.reshape(n, -1)
    right = flat >> _ONE  # right neighbour aligned onto each pixel
    right[:, :-1] |= flat[:, 1:] << _SIXTY_THREE
    right = right.reshape(m.shape)
    # The lower neighbour of the last row is the row itself, so S and SE collapse to the in-row test there.
    down = np.concatenate([m[:, 1:], m[:, -1:]], axis=1)
    down_right = np.concatenate([right[:, 1:], right[:, -1:]], axis=1)
    b = (m ^ right) | (m ^ down_right)
    b &= _column_mask(width, nwp)  # the last column has no right neighbour: only the lower test counts
    b |= m ^ down
    return b


def _column_mask(width: int, nwp: int) -> np.ndarray:
    bits = np.zeros(nwp * 64, dtype=bool)
    bits[: width - 1] = True
    return np.packbits(bits, bitorder="little").view("<u8")


def _contour(g: np.ndarray, p: np.ndarray, width: int, r: int) -> np.ndarray:
    bg, bp = _boundary(g, width), _boundary(p, width)
    n_g, n_p = _popcount(bg), _popcount(bp)
    both = (n_g > 0) & (n_p > 0)
    out = np.where((n_g == 0) & (n_p == 0), 1.0, 0.0)
    if not both.any():
        return out
    idx = np.flatnonzero(both)
    if len(idx) < len(both):
        bg, bp = bg[idx], bp[idx]
    # One dilation call over both stacks halves numpy's per-call overhead.
    dil = _dilate(np.concatenate([bg, bp]), r)
    precision = _popcount(bp & dil[: len(bg)]) / n_p[idx].astype(np.float64)
    recall = _popcount(bg & dil[len(bg):]) / n_g[idx].astype(np.float64)
    denom = precision + recall
    f = np.zeros(len(idx), dtype=np.float64)
    ok = denom != 0
    # Same float expression and order as the official code: 2 * P * R / (P + R).
    f[ok] = 2 * precision[ok] * recall[ok] / denom[ok]
    out[idx] = f
    return out


def _dilate(b: np.ndarray, r: int) -> np.ndarray:
    """Packed dilation of (n, H, nwp) maps by the disk of radius r (pad words absorb the spill).

    The disk is the union over rows dy of horizontal runs of half-width w(dy) = isqrt(r² − dy²): the few
    distinct horizontal dilations H_w are built by growing H_b to H_{b+c} = H_b | H_b shifted by ±c with
    c <= b + 1 (so every source is reached through an in-image intermediate), then OR-ed in at row offsets.
    """
    n, h, nwp = b.shape
    widths = [isqrt(r * r - dy * dy) for dy in range(r + 1)]
    maps = {0: b}
    current, cw = b.reshape(n, -1), 0
    for target in sorted(set(widths) - {0}):
        while cw < target:
            c = min(target - cw, cw + 1, 63)
            current = current | _shift(current, c) | _shift(current, -c)
            cw += c
        maps[cw] = current.reshape(b.shape)
    out = maps[widths[0]].copy()
    for dy in range(1, min(r, h - 1) + 1):
        m = maps[widths[dy]]
        out[:, dy:] |= m[:, :-dy]
        out[:, :-dy] |= m[:, dy:]
    return out


def _shift(u: np.ndarray, c: int) -> np.ndarray:
    """Flat (n, L) words with pixel x moved to x + c (bits carried across words; 0 < |c| < 64)."""
    out = np.empty_like(u)
    if c > 0:
        np.left_shift(u, np.uint64(c), out=out)
        out[:, 1:] |= u[:, :-1] >> np.uint64(64 - c)
    else:
        np.right_shift(u, np.uint64(-c), out=out)
        out[:, :-1] |= u[:, 1:] << np.uint64(64 + c)
    return out
