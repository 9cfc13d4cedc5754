"""J (region similarity) and F (contour accuracy) exactly as the official DAVIS-2017 / MeViS code defines them.

Rules (every one is tested against :mod:`reviosa.evaluate.reference`, a per-frame ``cv2.dilate`` port):

* any non-zero value is foreground (1, 255, 0.2, negative, NaN); no threshold, no resizing; GT and
  prediction of different shapes raise ``AssertionError`` like the official code, so callers port unchanged;
* J = |G ∧ P| / |G ∨ P|, and 1 when both are empty;
* the boundary of a mask marks pixels that differ from their right, lower or lower-right neighbour inside
  the image (the image border is never a boundary, so a full-frame mask has none);
* F is the F-measure of boundary precision/recall with tolerance radius ``r = ceil(bound_th · √(H²+W²))``
  (``bound_th`` itself when >= 1), matching within Euclidean distance ``<= r``; both boundaries empty → 1,
  one empty → 0.

Speed. Frames are taken a block at a time. One streaming ``cv2.reduce`` pass gives each row's foreground
sum, hence the rows of the block's bounding box; OR-ing only those rows gives its columns. Both masks are cut
to that box and packed 64 pixels per ``uint64`` word (in place from the input when the box is away from the
image border), and everything after that is a few dozen numpy passes over the packed words of the whole
block: boundaries are XORs of shifted words; the disk dilation uses that the disk is a union of horizontal
runs of half-width w(dy) = isqrt(r² − dy²), so each distinct run is one shift-and-OR step from the previous
one and is OR-ed in at its row offsets ±dy; sizes and intersections are popcounts. Scratch buffers are
reused between blocks. ``benchmarks/metrics_speed.py`` measures the speed-up against
:mod:`reviosa.evaluate.reference`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from math import isqrt

import cv2
import numpy as np

#: input pixels per block of frames: enough frames to amortise numpy's per-call cost, few enough that the
#: block is still in cache when its rows are read a second time and its packed words stay in L2
_BLOCK_PIXELS = 5 << 20
_U1 = np.uint64(1)
_U63 = np.uint64(63)


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
    _, f = _scores(g, p, boundary_radius(bound_th, g.shape[-2], g.shape[-1]))
    return float(f[0]) if squeeze else f


def jf(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (J, F) float64 arrays of a (T, H, W) stack (or length-1 arrays for an (H, W) frame)."""
    g, p, _ = _prepare(gt, pred, allow_nd=False)
    return _scores(g, p, boundary_radius(bound_th, g.shape[-2], g.shape[-1]))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The (H, W) bool boundary map of one frame (pixels whose right/lower/lower-right neighbour differs)."""
    m, _, _ = _prepare(mask, mask, allow_nd=False)
    if m.ndim != 3 or len(m) != 1:
        raise ValueError(f"boundary_map takes one (H, W) frame, got shape {np.shape(mask)}")
    h, w = m.shape[1:]
    crop = _Crop(h, w, 0, h, 0, w, 0)
    words = _pack_crop(_as_bytes(m), crop, _Workspace())
    b = np.empty_like(words)
    _boundary(words, b, np.empty_like(words), crop)
    bits = b.reshape(crop.rows, crop.nw)[crop.pad:].view(np.uint8)
    return np.unpackbits(bits, axis=-1, count=w, bitorder="little").astype(bool)


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
    return gt, pred, squeeze


def _as_bytes(x: np.ndarray) -> np.ndarray:
    """C-contiguous bytes of a stack, non-zero where it is foreground (``astype(bool)``: NaN, negatives too)."""
    # One-byte integers are used as they are: every later step only asks whether a byte is non-zero.
    x = x.view(np.uint8) if x.dtype in (np.bool_, np.uint8, np.int8) else x != 0
    return np.ascontiguousarray(x).view(np.uint8)


class _Workspace:
    """Named scratch buffers reused across blocks: a fresh large array per pass costs more in page faults than the
    pass itself."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.uint64) -> np.ndarray:
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            # a little headroom, since consecutive blocks have slightly different crops
            buf = self._buffers[name] = np.empty(size + size // 4, dtype)
        return buf[:size].reshape(shape)


class _Crop:
    """Where a block's masks sit in the packed layout.

    Each frame becomes ``pad`` empty rows followed by the crop's ``hc`` rows, each of ``nw`` words holding the
    crop's ``wc`` columns from bit 0 and at least ``pad`` empty bits after them. Rows are then contiguous
    across frames, so a vertical shift is a flat word offset: a shift of up to ``pad`` rows moves a frame's rows
    only into its own or the next frame's empty rows, and a horizontal spill of up to ``pad`` bits only into
    the empty bits at a row's end, never into another row's pixels.
    """

    def __init__(self, h: int, w: int, y0: int, y1: int, x0: int, x1: int, r: int) -> None:
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.hc, self.wc = y1 - y0, x1 - x0
        self.pad = max(1, r)
        self.nw = -(-(self.wc + self.pad) // 64)
        self.rows = self.pad + self.hc
        # Fast path: the empty rows above the crop and the columns up to the last word lie inside the image
        # (and are empty there, being outside the bounding box), so the input can be packed in place.
        self.in_place = y0 >= self.pad and x0 + 64 * self.nw <= w
        self.bottom = y1 == h


def _pack_crop(x: np.ndarray, c: _Crop, ws: _Workspace) -> np.ndarray:
    """Packed (k, rows * nw) words of a block of bytes (non-zero is foreground), in the layout of ``c``."""
    k = len(x)
    if c.in_place:
        src = x[:, c.y0 - c.pad:c.y1, c.x0:c.x0 + 64 * c.nw]
    else:
        src = ws.get("pad_bytes", (k, c.rows, 64 * c.nw), np.uint8)
        src[:, : c.pad] = 0
        src[:, c.pad:, c.wc:] = 0
        src[:, c.pad:, : c.wc] = x[:, c.y0:c.y1, c.x0:c.x1]
    return np.packbits(src, axis=-1, bitorder="little").view("<u8").reshape(k, c.rows * c.nw)


# ---------------------------------------------------------------------- J and F of a block
def _scores(g: np.ndarray, p: np.ndarray, r: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and (if ``r`` is given) F of (T, H, W) stacks, block by block."""
    t, h, w = g.shape
    # Per frame: |G|, |P|, |G∧P|, |Bg|, |Bp|, |Bp∧D(Bg)|, |Bg∧D(Bp)|; all zero (J = F = 1) for empty frames.
    counts = np.zeros((7, t), dtype=np.int64)
    ws = _Workspace()
    step = max(1, _BLOCK_PIXELS // (h * w))
    for start in range(0, t, step):
        sl = slice(start, min(t, start + step))
        gb, pb = _as_bytes(g[sl]), _as_bytes(p[sl])
        rows = np.flatnonzero(_rows_used(gb) | _rows_used(pb))
        if len(rows) == 0:
            continue
        ya, yb = rows[0], rows[-1] + 1
        cols = np.flatnonzero(_cols_used(gb, ya, yb) | _cols_used(pb, ya, yb))
        # One empty row/column of margin on each side where the image has one: pixels left of or above the
        # foreground can be boundary pixels, nothing further out can, and the crop's last row/column is either
        # the image's own or empty with empty neighbours, so the "no lower/right neighbour" rule stays right.
        crop = _Crop(h, w, max(0, ya - 1), min(h, yb + 1), max(0, cols[0] - 1), min(w, cols[-1] + 2), r or 0)
        counts[:, sl] = _block_counts(gb, pb, crop, r, ws)
    return _region(counts), _contour(counts)


def _rows_used(x: np.ndarray) -> np.ndarray:
    """Rows holding foreground in any frame of a block of bytes: one streaming pass (cv2's row sums)."""
    k, h, w = x.shape
    return cv2.reduce(x.reshape(k * h, w), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(k, h).any(axis=0)


def _cols_used(x: np.ndarray, ya: int, yb: int) -> np.ndarray:
    """Columns holding foreground in rows [ya, yb) of any frame of a block of bytes."""
    k, h, w = x.shape
    # OR-ing 4 rows at a time as one long row is faster than row by row; the band may grow to a multiple of 4.
    n = 4 * -(-(yb - ya) // 4)
    if n > h:
        return np.bitwise_or.reduce(x[:, ya:yb], axis=(0, 1)) != 0
    ya = min(ya, h - n)
    folded = np.bitwise_or.reduce(x[:, ya:ya + n].reshape(k, n // 4, 4 * w), axis=1)
    return np.bitwise_or.reduce(folded.reshape(k * 4, w), axis=0) != 0


def _block_counts(gb: np.ndarray, pb: np.ndarray, c: _Crop, r: int | None,
                  ws: _Workspace) -> np.ndarray:
    """The 7 per-frame counts of :func:`_scores` for a block."""
    k, n_words = len(gb), c.rows * c.nw
    # Rows [0, 2k): the masks of G then P (later the matched boundary pixels), [2k, 3k): G∧P, [3k, 5k): the
    # boundaries. Few, reused buffers keep a block's words in L2; one popcount and one cv2 row sum count a span.
    counted = ws.get("counted", (5 * k if r is not None else 3 * k, n_words))
    masks = counted[: 2 * k]
    masks[:k] = _pack_crop(gb, c, ws)
    masks[k:] = _pack_crop(pb, c, ws)
    np.bitwise_and(masks[:k], masks[k:], out=counted[2 * k:3 * k])
    counts = np.zeros((7, k), dtype=np.int64)
    counts[:3] = _popcounts(counted[: 3 * k], ws).reshape(3, k)
    if r is not None:
        bounds = counted[3 * k:]
        _boundary(masks, bounds, ws.get("tmp", masks.shape), c)
        near = _dilate(bounds, r, c.nw, ws, masks)
        np.bitwise_and(bounds[k:], near[:k], out=masks[:k])  # pred boundary pixels near a GT one
        np.bitwise_and(bounds[:k], near[k:], out=masks[k:])  # GT boundary pixels near a pred one
        sums = _popcounts(counted, ws).reshape(5, k)
        counts[3:5], counts[5:] = sums[3:], sums[:2]
    return counts


def _popcounts(words: np.ndarray, ws: _Workspace) -> np.ndarray:
    """Set bits in each row of a (n, m) array of words."""
    bits = np.bitwise_count(words, out=ws.get("popcounts", words.shape, np.uint8))
    return cv2.reduce(bits, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0].astype(np.int64)


def _region(counts: np.ndarray) -> np.ndarray:
    size_g, size_p, inter = counts[:3]
    union = size_g + size_p - inter
    j = np.ones(counts.shape[1], dtype=np.float64)
    nz = union != 0
    j[nz] = inter[nz] / union[nz]
    return j


def _contour(counts: np.ndarray) -> np.ndarray:
    n_g, n_p, hit_p, hit_g = counts[3:]
    f = np.where((n_g == 0) & (n_p == 0), 1.0, 0.0)
    both = np.flatnonzero((n_g > 0) & (n_p > 0))
    precision = hit_p[both] / n_p[both].astype(np.float64)
    recall = hit_g[both] / n_g[both].astype(np.float64)
    denom = precision + recall
    ok = denom != 0
    # Same float expression and order as the official code: 2 * P * R / (P + R); 0 when P + R = 0.
    f[both[ok]] = 2 * precision[ok] * recall[ok] / denom[ok]
    return f


def _boundary(m: np.ndarray, out: np.ndarray, tmp: np.ndarray, c: _Crop) -> None:
    """Boundary maps of packed masks ``m`` (n, rows * nw) into ``out``; ``tmp`` is scratch of the same shape.

    With a = "differs from the right neighbour" and d = "differs from the lower neighbour", "differs from the
    lower-right neighbour" is d ^ a(row below), so the boundary is a | a(row below) | d.
    """
    nw = c.nw
    mf, of, tf = m.reshape(-1), out.reshape(-1), tmp.reshape(-1)
    np.right_shift(mf, _U1, out=of)  # right neighbour aligned onto each pixel, carried across words
    np.left_shift(mf[1:], _U63, out=tf[:-1])
    of[:-1] |= tf[:-1]
    of ^= mf
    # The last column has no right neighbour, and the empty bits after a row must stay empty.
    out &= _column_mask(c.rows, nw, c.wc - 1)
    np.bitwise_xor(mf[:-nw], mf[nw:], out=tf[:-nw])
    tf[:-nw] |= of[nw:]
    tf[-nw:] = 0
    if c.bottom or not c.in_place:
        # The image's last row has no lower neighbour; padded empty rows get none from the crop's first row.
        tmp &= _row_mask(c.rows, nw, c.pad, c.rows - 1 if c.bottom else c.rows)
    of |= tf


@lru_cache(maxsize=32)
def _column_mask(rows: int, nw: int, keep: int) -> np.ndarray:
    bits = np.zeros(nw * 64, dtype=bool)
    bits[:keep] = True
    return np.tile(np.packbits(bits, bitorder="little").view("<u8"), rows)


@lru_cache(maxsize=32)
def _row_mask(rows: int, nw: int, first: int, stop: int) -> np.ndarray:
    keep = np.zeros((rows, nw), dtype=np.uint64)
    keep[first:stop] = ~np.uint64(0)
    return keep.reshape(-1)


def _dilate(b: np.ndarray, r: int, nw: int, ws: _Workspace, spare: np.ndarray) -> np.ndarray:
    """Packed maps (n, rows * nw) dilated by the disk of radius r, into a workspace buffer; ``spare`` is scratch.

    The disk is the union over rows dy of horizontal runs of half-width w(dy) = isqrt(r² − dy²). The distinct
    runs H_w are built in increasing order, H_{b+c} = H_b | H_b shifted by ±c with c <= b + 1 (so every
    source is reached through an intermediate inside the array), each OR-ed in at its row offsets ±dy right
    away, so only two of them are alive at a time.
    """
    if r == 0:
        return b
    shape, flat = b.shape, b.reshape(-1)
    out = ws.get("dilated", flat.shape)
    free = [ws.get("run", flat.shape), spare.reshape(-1)]
    tmp = ws.get("tmp", flat.shape)
    cur, width, started = flat, 0, False
    for target, rows in _disk_rows(r):
        while width < target:
            step = min(target - width, width + 1, 63)
            up, down = np.uint64(step), np.uint64(64 - step)
            nxt = free.pop()
            np.left_shift(cur, up, out=nxt)  # pixel x moved to x + step, carried across words ...
            nxt |= cur
            np.right_shift(cur[:-1], down, out=tmp[1:])
            nxt[1:] |= tmp[1:]
            np.right_shift(cur, up, out=tmp)  # ... and to x - step
            nxt |= tmp
            np.left_shift(cur[1:], down, out=tmp[:-1])
            nxt[:-1] |= tmp[:-1]
            if cur is not flat:
                free.append(cur)
            cur, width = nxt, width + step
        for dy in rows:
            o = dy * nw
            if dy == 0:
                out |= cur
            elif not started:
                out[o:] = cur[:-o]
                out[:o] = 0
                out[:-o] |= cur[o:]
                started = True
            else:
                out[o:] |= cur[:-o]
                out[:-o] |= cur[o:]
    return out.reshape(shape)


@lru_cache(maxsize=16)
def _disk_rows(r: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """(w, the rows dy >= 0 whose run in the disk of radius r has half-width w), by increasing w."""
    rows: dict[int, list[int]] = {}
    for dy in range(r + 1):
        rows.setdefault(isqrt(r * r - dy * dy), []).append(dy)
    return tuple((w, tuple(dys)) for w, dys in sorted(rows.items()))
