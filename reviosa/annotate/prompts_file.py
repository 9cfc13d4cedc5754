"""The SAM2 prompts file of stage 0 (``prompts.json`` in a split), validated with pydantic.

Layout (object ids are the ``objects`` keys of ``meta_expressions.json``)::

    {"<video>": {"<obj_id>": {"frame": "00000", "box": [x0, y0, x1, y1]},
                 "<obj_id>": {"frame": "00012", "points": [[x, y], ...], "labels": [1, 0]},
                 "<obj_id>": {"mask": {"size": [H, W], "counts": "..."}}}}

``frame`` is a frame name of the video (default: its first frame). Coordinates are pixels of the original
frame (x to the right, y down). A box may be combined with points (SAM2 takes both); a mask stands alone.
Point labels are 1 (object) or 0 (background), as in SAM2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from reviosa.data.format import DatasetError, InterRVOSDataset, Video
from reviosa.data.rle import decode_rle

PROMPTS_FILE = "prompts.json"


class ObjectPrompt(BaseModel):
    """One object's SAM2 prompt on one frame: a box and/or points, or a mask."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: str | None = Field(None, description="frame name; None = the video's first frame")
    box: tuple[float, float, float, float] | None = Field(None, description="[x0, y0, x1, y1] in pixels")
    points: list[tuple[float, float]] | None = Field(None, description="[[x, y], ...] in pixels")
    labels: list[int] | None = Field(None, description="1 = object, 0 = background, one per point")
    mask: dict[str, Any] | None = Field(None, description="COCO RLE {size: [H, W], counts} of the object")

    @model_validator(mode="after")
    def _one_kind(self) -> "ObjectPrompt":
        if self.mask is None and self.box is None and not self.points:
            raise ValueError("a prompt needs a 'box', 'points' (with 'labels') or a 'mask'")
        if self.mask is not None and (self.box is not None or self.points):
            raise ValueError("a 'mask' prompt cannot be combined with a box or points")
        if self.points is not None:
            if not self.points:
                raise ValueError("'points' is empty")
            if self.labels is None or len(self.labels) != len(self.points):
                raise ValueError(f"'labels' must give one label per point ({len(self.points)})")
            if any(lab not in (0, 1) for lab in self.labels):
                raise ValueError(f"point labels must be 1 (object) or 0 (background), got {self.labels}")
        elif self.labels is not None:
            raise ValueError("'labels' given without 'points'")
        if self.box is not None and not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
            raise ValueError(f"box {list(self.box)} must satisfy x0 < x1 and y0 < y1")
        if self.mask is not None and not {"size", "counts"} <= set(self.mask):
            raise ValueError("a mask prompt must be a COCO RLE with 'size' and 'counts'")
        return self


class PromptsFile(RootModel[dict[str, dict[int, ObjectPrompt]]]):
    """``{video: {obj_id: ObjectPrompt}}``."""


def load_prompts(path: str | os.PathLike) -> dict[str, dict[int, ObjectPrompt]]:
    """Read and schema-check a prompts file; errors name the file, video and object."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetError(path, f"cannot read prompts ({err.strerror or err})") from None
    except ValueError as err:
        raise DatasetError(path, f"not valid JSON ({err})") from None
    try:
        return PromptsFile.model_validate(raw).root
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(x) for x in first["loc"]]
        raise DatasetError(path, f"{first['msg']} ({len(err.errors())} error(s))", video=loc[0] if loc else None,
                           field=".".join(loc[1:]) or None) from None


def save_prompts(path: str | os.PathLike, prompts: dict[str, dict[int, ObjectPrompt]]) -> Path:
    """Write a prompts file atomically (None fields left out)."""
    from reviosa.data.atomic import atomic_write_text

    body = {v: {str(o): p.model_dump(mode="json", exclude_none=True) for o, p in sorted(objs.items())}
            for v, objs in sorted(prompts.items())}
    path = Path(path)
    atomic_write_text(path, json.dumps(body, indent=1))
    return path


def check_prompts(ds: InterRVOSDataset, prompts: dict[str, dict[int, ObjectPrompt]],
                  source: str | os.PathLike = PROMPTS_FILE) -> None:
    """Every prompt names a known video, object and frame, and lies inside the frame (mask: right size)."""
    for vid, objs in prompts.items():
        video = ds.videos.get(vid)
        if video is None:
            raise DatasetError(source, "unknown video (not in meta_expressions.json)", video=vid)
        h, w = ds.frame_size(video)
        for oid, p in objs.items():
            where = {"video": vid, "field": str(oid)}
            if oid not in video.objects:
                raise DatasetError(source, f"unknown object {oid} (the video has {sorted(video.objects)})", **where)
            if p.frame is not None and p.frame not in video.frames:
                raise DatasetError(source, f"unknown frame {p.frame!r} (the video has {video.num_frames} frames, "
                                   f"{video.frames[0]!r}..{video.frames[-1]!r})", **where)
            if p.box is not None:
                x0, y0, x1, y1 = p.box
                if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                    raise DatasetError(source, f"box {list(p.box)} lies outside the {w}x{h} frame", **where)
            for x, y in p.points or []:
                if not (0 <= x <= w and 0 <= y <= h):
                    raise DatasetError(source, f"point ({x}, {y}) lies outside the {w}x{h} frame", **where)
            if p.mask is not None:
                size = [int(s) for s in p.mask["size"]]
                if size != [h, w]:
                    raise DatasetError(source, f"mask size {size} does not match the frame size [{h}, {w}]",
                                       **where)
                try:
                    area = int(decode_rle(p.mask).sum())
                except Exception as err:  # noqa: BLE001 - pycocotools raises assorted types on bad RLE
                    raise DatasetError(source, f"mask RLE does not decode ({err})", **where) from None
                if area == 0:
                    raise DatasetError(source, "mask prompt is empty", **where)


def prompt_frame(video: Video, prompt: ObjectPrompt) -> int:
    """Index of the prompted frame."""
    return 0 if prompt.frame is None else video.frames.index(prompt.frame)


def prompt_mask(prompt: ObjectPrompt) -> np.ndarray | None:
    """The decoded (H, W) bool mask of a mask prompt."""
    return None if prompt.mask is None else decode_rle(prompt.mask)


def prompts_from_masks(video: Video, masks: dict[int, np.ndarray], kind: str = "mask", frame: int | None = 0
                       ) -> dict[int, ObjectPrompt]:
    """Prompts derived from known (T, H, W) tracks on ``frame`` (None: each object's first visible frame): the
    mask, its box or a point on it. Objects absent on that frame get no prompt."""
    from reviosa.data.rle import encode_mask

    out: dict[int, ObjectPrompt] = {}
    for oid, track in masks.items():
        visible = np.flatnonzero(track.reshape(len(track), -1).any(axis=1))
        t = (int(visible[0]) if len(visible) else 0) if frame is None else frame
        m = track[t]
        if not m.any():
            continue
        name = video.frames[t]
        ys, xs = np.nonzero(m)
        if kind == "mask":
            out[oid] = ObjectPrompt(frame=name, mask=encode_mask(m))
        elif kind == "box":
            out[oid] = ObjectPrompt(frame=name, box=(float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                                     float(ys.max() + 1)))
        elif kind == "points":
            i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))  # a pixel of the object near its centre
            out[oid] = ObjectPrompt(frame=name, points=[(float(xs[i]) + 0.5, float(ys[i]) + 0.5)], labels=[1])
        else:
            raise ValueError(f"kind must be mask, box or points, got {kind!r}")
    return out


def prompts_from_vidor(annotation: dict[str, Any], frames: list[str] | None = None) -> dict[int, ObjectPrompt]:
    """Box prompts from one VidOR annotation (``trajectories``: per frame, ``[{tid, bbox{xmin..ymax}}]``):
    each ``tid`` is prompted with its box on the first frame it appears in (frame names ``%05d`` by default)."""
    trajectories = annotation.get("trajectories")
    if not isinstance(trajectories, list):
        raise ValueError("a VidOR annotation needs a 'trajectories' list (one list of boxes per frame)")
    out: dict[int, ObjectPrompt] = {}
    for t, boxes in enumerate(trajectories):
        for item in boxes:
            tid = int(item["tid"])
            if tid in out:
                continue
            b = item["bbox"]
            name = frames[t] if frames is not None else f"{t:05d}"
            # VidOR boxes are inclusive pixel indices; SAM2 boxes are corner coordinates
            out[tid] = ObjectPrompt(frame=name, box=(float(b["xmin"]), float(b["ymin"]), float(b["xmax"]) + 1,
                                                     float(b["ymax"]) + 1))
    return out

