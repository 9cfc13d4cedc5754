"""COCO run-length encoding of binary masks (pycocotools), as stored in ``mask_dict.json``."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as cocomask

RLE = dict[str, Any]


def encode_mask(mask: np.ndarray) -> RLE:
    """Encode one (H, W) mask (non-zero = foreground) as a JSON-ready COCO RLE."""
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects a 2-D (H, W) mask, got shape {mask.shape}")
    rle = cocomask.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_track(masks: np.ndarray, *, absent_as_null: bool = True) -> list[RLE | None]:
    """Encode a (T, H, W) mask track; empty frames become ``None`` (object absent) by default."""
    if masks.ndim != 3:
        raise ValueError(f"encode_track expects a 3-D (T, H, W) stack, got shape {masks.shape}")
    return [None if absent_as_null and not m.any() else encode_mask(m) for m in masks]


#: the largest mask side accepted from data: decoding allocates H x W bytes, so a corrupt size must not
#: ask for terabytes (4K video is 3840 wide; PIL refuses images past ~13000 x 13000 as decompression bombs)
MAX_SIDE = 16384
_UINT32 = 0xFFFFFFFF


def _string_counts(s: str) -> np.ndarray:
    """The run lengths of a COCO compressed ``counts`` string, as pycocotools' rleFrString reads them (vectorised).

    Each run is 5-bit groups, low first, in characters ``chr(48 + c)``: bit 0x20 of ``c`` says another follows, bit
    0x10 of the last one is the sign; from the fourth run on, a run is stored as the difference to the one two back.
    """
    try:
        c = np.frombuffer(s.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise ValueError("RLE counts are not ASCII") from None
    if not c.size:
        return c
    if c.min() < 0 or c.max() > 63:
        bad = s[int(np.flatnonzero((c < 0) | (c > 63))[0])]
        raise ValueError(f"character {bad!r} cannot occur in a compressed RLE")
    last = (c & 0x20) == 0
    if not last[-1]:
        raise ValueError("the counts string ends inside a run length")
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    k = np.arange(c.size) - np.repeat(starts, np.diff(np.append(starts, c.size)))
    # pycocotools never writes more than 7 characters per run (35 bits hold any uint32); past that C shifts
    # beyond 64 bits, where the two readers would disagree.
    if k.max() >= 7:
        raise ValueError("a run length is longer than 7 characters")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    x -= np.where(c[last] & 0x10, 1 << (5 * (k[last] + 1)), 0)  # sign-extend: x | (-1 << n) is x - 2**n here
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])  # x[m] += runs[m - 2] from m = 3 on: a running sum per parity
    runs[2::2] = np.cumsum(x[2::2])
    return runs & _UINT32  # C keeps uint32: a negative run wraps to a huge one, as there


def check_rle(rle: Any) -> tuple[int, int]:
    """(H, W) of a well-formed RLE, else ValueError saying what is wrong (before anything is decoded).

    pycocotools refuses runs past the end of the mask but returns uninitialised memory for runs that stop short, so
    the run lengths must add up to exactly H x W.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("expected an RLE object {size, counts} or null")
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in size)):
        raise ValueError(f"RLE size must be a list [H, W] of two integers, got {size!r}")
    h, w = size
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"RLE size {[h, w]} is out of range (each side 1 to {MAX_SIDE})")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("RLE counts are not ASCII") from None
    if isinstance(counts, str):
        runs = _string_counts(counts)
    elif isinstance(counts, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in counts):
        if any(not 0 <= x <= _UINT32 for x in counts):
            raise ValueError("RLE counts must be non-negative 32-bit integers")
        runs = np.array(counts, dtype=np.int64)
    else:
        raise ValueError(f"RLE counts must be a string or a list of integers, got {type(counts).__name__}")
    total = int(runs.sum()) if not runs.size or runs.max() <= h * w else None  # no int64 overflow on garbage
    if total != h * w:
        raise ValueError(f"RLE run lengths add up to {'more than' if total is None else total} pixels, not "
                         f"{h}x{w} = {h * w}")
    return h, w


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode one COCO RLE (``counts`` as str or bytes) into a bool (H, W) mask."""
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE, as COCO allows
        obj = cocomask.frPyObjects(rle, *rle["size"])
    else:
        obj = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return cocomask.decode(obj).astype(bool)


def rle_area(rle: RLE) -> int:
    """Number of foreground pixels of an RLE without decoding it."""
    counts = rle["counts"]
    obj = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(cocomask.area(obj))
