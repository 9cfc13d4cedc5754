"""Human review round trip: export a split to one CSV plus overlay images per video, import the corrections back.

Reviewers edit ``text``, ``actor``/``target`` (object ids, space-separated) and ``status`` (empty, ``ok`` or
``rejected``) in ``<review>/<video>/expressions.csv``; ``overlay_<frame>.jpg`` shows every object labelled
with its id. The import matches rows by ``exp_id``: every expression must be present exactly once, rows may
be sorted any way, and the split keeps its own order, so nothing is lost or reordered.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from reviosa.annotate.overlay import fit, jpeg_bytes, label_objects, sample_indices
from reviosa.data.atomic import atomic_write_bytes, atomic_write_text
from reviosa.data.format import DatasetError, Direction, InterRVOSDataset
from reviosa.data.names import inside

COLUMNS = ("exp_id", "type", "direction", "kind", "actor", "target", "text", "status")
CSV_NAME = "expressions.csv"
STATUSES = ("", "ok", "rejected")


def export_review(split: str | os.PathLike, out: str | os.PathLike, *, frames: int = 3, max_side: int = 640) -> int:
    """Write ``<out>/<video>/expressions.csv`` and labelled overlay frames; returns the number of rows."""
    ds, out = InterRVOSDataset.load(split), Path(out)
    rows = 0
    for video in ds.videos.values():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for e in video.expressions.values():
            kind = "/".join(str(e.extra[k]) for k in ("subtype", "level", "voice") if k in e.extra)
            writer.writerow([e.exp_id, e.type.value, e.direction.value if e.direction else "", kind,
                             " ".join(map(str, e.obj_ids)), " ".join(map(str, e.target_obj_ids)), e.text,
                             e.extra.get("review", "")])
            rows += 1
        # Names from the data: every file stays inside out, links included.
        atomic_write_text(inside(out, video.name, CSV_NAME, what="video name"), buf.getvalue())
        masks = {o: ds.object_masks(video, o) for o in video.objects}
        present = [any(m[t].any() for m in masks.values()) for t in range(video.num_frames)]
        idx = sample_indices(np.array(present), frames)
        for img, t in zip(ds.read_frames(video, idx), idx):
            labelled = label_objects(img, {o: m[t] for o, m in masks.items()})
            path = inside(out, video.name, f"overlay_{video.frames[t]}.jpg", what="frame name")
            atomic_write_bytes(path, jpeg_bytes(fit(labelled, max_side)))
    atomic_write_text(out / "review_manifest.json", json.dumps({"videos": list(ds.videos)}, indent=1))
    return rows


def import_review(split: str | os.PathLike, review: str | os.PathLike) -> int:
    """Apply the reviewed CSVs to the split in place (validated, atomic); returns the number of changed expressions."""
    ds, review = InterRVOSDataset.load(split), Path(review)
    changed = 0
    for video in ds.videos.values():
        path = inside(review, video.name, CSV_NAME, what="video name")
        if not path.exists():
            raise DatasetError(path, "review file is missing", video=video.name)
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            needed = ("exp_id", "actor", "target", "text", "status")
            missing_cols = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing_cols:
                raise DatasetError(path, f"missing columns {missing_cols}", video=video.name)
            rows = list(reader)
        by_id: dict[str, dict[str, str]] = {}
        for line, row in enumerate(rows, start=2):
            eid = (row["exp_id"] or "").strip()
            if eid in by_id:
                raise DatasetError(path, f"line {line}: exp_id {eid!r} appears twice", video=video.name, field=eid)
            if eid not in video.expressions:
                raise DatasetError(path, f"line {line}: exp_id {eid!r} is not in the split", video=video.name,
                                   field=eid)
            by_id[eid] = row
        lost = [e for e in video.expressions if e not in by_id]
        if lost:
            raise DatasetError(path, f"{len(lost)} expression(s) missing from the review: {lost[:5]}",
                               video=video.name)
        for eid, exp in video.expressions.items():
            row = by_id[eid]
            text = (row["text"] or "").strip()
            if not text:
                raise DatasetError(path, "text is empty (mark the row 'rejected' instead)", video=video.name, field=eid)
            actor = _ids(path, video, eid, "actor", row["actor"])
            target = _ids(path, video, eid, "target", row["target"])
            status = (row["status"] or "").strip()
            if status not in STATUSES:
                raise DatasetError(path, f"status {status!r} is not one of {STATUSES[1:]} or empty", video=video.name,
                                   field=eid)
            if target and exp.direction is not Direction.UNIDIRECTIONAL:
                kind = exp.type.value + (f"/{exp.direction.value}" if exp.direction else "")
                raise DatasetError(path, f"only unidirectional interactions have a target (this is {kind})",
                                   video=video.name, field=eid)
            if exp.direction is Direction.UNIDIRECTIONAL and not target:
                raise DatasetError(path, "a unidirectional interaction needs a target", video=video.name, field=eid)
            before = (exp.text, exp.obj_ids, exp.target_obj_ids, exp.extra.get("review", ""))
            if before == (text, actor, target, status):
                continue
            anno = {o: info.anno_id for o, info in video.objects.items()}
            exp.text, exp.obj_ids, exp.target_obj_ids = text, actor, target
            exp.anno_ids, exp.target_anno_ids = [anno[o] for o in actor], [anno[o] for o in target]
            if status:
                exp.extra["review"] = status
            else:
                exp.extra.pop("review", None)
            changed += 1
    ds.validate(check_frames=False)
    ds.save()
    return changed


def _ids(path: Path, video, eid: str, column: str, value: str | None) -> list[int]:
    try:
        ids = [int(x) for x in (value or "").replace(",", " ").split()]
    except ValueError:
        raise DatasetError(path, f"{column} {value!r} is not a list of object ids", video=video.name,
                           field=eid) from None
    unknown = [i for i in ids if i not in video.objects]
    if unknown:
        raise DatasetError(path, f"{column}: unknown object ids {unknown}; the video has {sorted(video.objects)}",
                           video=video.name, field=eid)
    if column == "actor" and not ids:
        raise DatasetError(path, "actor is empty", video=video.name, field=eid)
    return ids
