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
