"""Expressions of the released InterRVOS layout (cvlab-kaist/InterRVOS, ``ReVIOSa/``), read and written losslessly.

An official expression::

    {"exp": "...", "obj_id": [...], "anno_id": [...],               # top level: may be absent in train
     "subject/object": {"obj_id":  {"subject": [...], "object": [...] | null},
                        "anno_id": {"subject": [...], "object": [...] | null}},
     "caption_type": "unidirectional" | "bidirectional" | ...}      # may be absent ("undefined" to the official code)

How it maps onto reviosa's fields (:class:`~reviosa.data.format.Expression`):

* ``unidirectional``: an interaction with roles; actor = subject, target = object (both must name objects).
* ``bidirectional``: an interaction without roles; its GT is the top-level ``anno_id``, or subject ∪ object
  when that is absent.
* any other or no ``caption_type``: a plain expression (single or multi by object count). An object there is an
  error: nothing says whether it is a target.
* The top-level ``obj_id``/``anno_id`` (what the official Actor and RVOS scores use) must name the subject's
  objects (bidirectional: at least the subject's, at most subject ∪ object); anything else makes the actor
  ambiguous and is an error.

What reviosa's fields cannot give back stays in ``Expression.official`` (written as an ``official`` block in the
reviosa layout): top-level ids, ``caption_type`` or ``subject/object`` that differ from the ones derived from the
reviosa fields (a null object, a bidirectional pair split into subject and object), and the keys that were
``absent``. The official layout in turn keeps the reviosa refinements it has no field for (``type``,
``direction``) in a ``reviosa`` block, which the official code never reads.

This module works on plain JSON values and reviosa's fields as a :class:`Fields` record; wrapping them into
:class:`~reviosa.data.format.Expression` and :class:`~reviosa.data.format.DatasetError` is ``format``'s job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

ROLES_KEY = "subject/object"
UNIDIRECTIONAL = "unidirectional"
BIDIRECTIONAL = "bidirectional"
OFFICIAL_BLOCK = "official"
REVIOSA_BLOCK = "reviosa"

#: kept verbatim when they differ from the derived form
VERBATIM = ("obj_id", "anno_id", "caption_type", ROLES_KEY)
#: keys the derived form has that an original may have left out
ABSENTABLE = ("obj_id", "anno_id", "caption_type")
OFFICIAL_KEYS = {"exp", "obj_id", "anno_id", "caption_type", ROLES_KEY, REVIOSA_BLOCK}
REVIOSA_ONLY = {"type", "direction", "target_obj_id", "target_anno_id", OFFICIAL_BLOCK}


class ClassifyError(ValueError):
    """An official expression whose roles cannot be told; ``field`` is relative to the expression."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Fields:
    """reviosa's fields of an expression (``type``/``direction`` as their string values)."""

    obj_ids: list[int]
    anno_ids: list[int]
    type: str
    direction: str | None
    target_obj_ids: list[int]
    target_anno_ids: list[int]

    def same_ids(self, other: Fields) -> bool:
        """Whether both name the same actor and target objects in the same order."""
        return (self.obj_ids, self.anno_ids, self.target_obj_ids, self.target_anno_ids) == (
            other.obj_ids, other.anno_ids, other.target_obj_ids, other.target_anno_ids)


def _ids(value: Any, field: str) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise ClassifyError(field, f"expected a list of integers, got {value!r}")
    return list(value)


def _roles(raw: dict[str, Any]) -> tuple[list[int], list[int], list[int], list[int]]:
    block = raw.get(ROLES_KEY)
    if not isinstance(block, dict):
        raise ClassifyError(ROLES_KEY, "must be an object {obj_id: {subject, object}, anno_id: {subject, object}}")
    parts = {}
    for kind in ("obj_id", "anno_id"):
        part, f = block.get(kind), f"{ROLES_KEY}.{kind}"
        if not isinstance(part, dict) or "subject" not in part:
            raise ClassifyError(f, "must be an object with a 'subject' list and an 'object' list or null")
        parts[kind] = (_ids(part["subject"], f + ".subject"), _ids(part.get("object"), f + ".object"))
    (s_obj, o_obj), (s_anno, o_anno) = parts["obj_id"], parts["anno_id"]
    for role, o, a in (("subject", s_obj, s_anno), ("object", o_obj, o_anno)):
        if len(o) != len(a):
            raise ClassifyError(f"{ROLES_KEY}.anno_id.{role}", f"{len(o)} obj_id but {len(a)} anno_id")
    return s_obj, s_anno, o_obj, o_anno


def _top(raw: dict[str, Any], key: str, low: list[int], high: list[int], caption: str | None) -> list[int]:
    """The top-level ids, checked against the subject/object block; the block's ids when absent."""
    if key not in raw:
        return list(high)
    ids = _ids(raw[key], key)
    if not set(low) <= set(ids) <= set(high):
        want = (f"the subject's {sorted(set(low))}" if set(low) == set(high) else
                f"at least the subject's {sorted(set(low))} and at most subject + object {sorted(set(high))}")
        raise ClassifyError(key, f"top-level {key} {ids} should name {want} (caption_type {caption!r}): "
                            "the actor is ambiguous")
    return ids


def classify(raw: dict[str, Any]) -> Fields:
    """reviosa's fields of one official expression; :class:`ClassifyError` names what cannot be told."""
    s_obj, s_anno, o_obj, o_anno = _roles(raw)
    caption = raw.get("caption_type")
    if caption is not None and not isinstance(caption, str):
        raise ClassifyError("caption_type", f"must be a string, got {caption!r}")
    if caption == UNIDIRECTIONAL:
        for role, ids in (("subject", s_anno), ("object", o_anno)):
            if not ids:
                what = "actor" if role == "subject" else "target"
                raise ClassifyError(f"{ROLES_KEY}.anno_id.{role}",
                                    f"a unidirectional interaction needs {role} ids (the {what}), got none")
        obj_ids = _top(raw, "obj_id", s_obj, s_obj, caption)
        anno_ids = _top(raw, "anno_id", s_anno, s_anno, caption)
        return Fields(obj_ids, anno_ids, "interaction", UNIDIRECTIONAL, o_obj, o_anno)
    if caption == BIDIRECTIONAL:
        both_obj = s_obj + [o for o in o_obj if o not in s_obj]
        both_anno = s_anno + [a for a in o_anno if a not in s_anno]
        obj_ids = _top(raw, "obj_id", s_obj, both_obj, caption)
        anno_ids = _top(raw, "anno_id", s_anno, both_anno, caption)
        return Fields(obj_ids, anno_ids, "interaction", BIDIRECTIONAL, [], [])
    if o_anno or o_obj:
        raise ClassifyError(f"{ROLES_KEY}.anno_id.object",
                            f"caption_type {caption!r} is neither {UNIDIRECTIONAL!r} nor {BIDIRECTIONAL!r}, but the "
                            f"object names ids {o_anno or o_obj}: cannot tell whether they are a target")
    obj_ids = _top(raw, "obj_id", s_obj, s_obj, caption)
    anno_ids = _top(raw, "anno_id", s_anno, s_anno, caption)
    return Fields(obj_ids, anno_ids, "multi" if len(anno_ids) > 1 else "single", None, [], [])


def derived(text: str, f: Fields) -> dict[str, Any]:
    """The official form reviosa's fields imply, before the kept differences are applied."""
    obj: tuple[list[int], list[int]] = ([], [])
    caption = None
    if f.target_anno_ids:
        caption, obj = UNIDIRECTIONAL, (list(f.target_obj_ids), list(f.target_anno_ids))
    elif f.type == "interaction":
        caption = BIDIRECTIONAL
    out: dict[str, Any] = {
        "exp": text, "obj_id": list(f.obj_ids), "anno_id": list(f.anno_ids),
        ROLES_KEY: {"obj_id": {"subject": list(f.obj_ids), "object": obj[0]},
                    "anno_id": {"subject": list(f.anno_ids), "object": obj[1]}}}
    if caption is not None:
        out["caption_type"] = caption
    return out


def core(text: str, f: Fields, kept: dict[str, Any]) -> dict[str, Any]:
    """The official form without the reviosa block and the extra keys: derived, then the kept differences."""
    out = derived(text, f)
    for key in kept.get("absent", ()):
        out.pop(key, None)
    for key in VERBATIM:
        if key in kept:
            out[key] = copy.deepcopy(kept[key])
    return out


def differences(raw: dict[str, Any], text: str, f: Fields) -> dict[str, Any]:
    """What ``raw`` says beyond the official form derived from ``f`` (the minimal kept differences)."""
    base = derived(text, f)
    out: dict[str, Any] = {}
    absent = [k for k in ABSENTABLE if k in base and k not in raw]
    if absent:
        out["absent"] = absent
    for key in VERBATIM:
        if key in raw and raw[key] != base.get(key):
            out[key] = copy.deepcopy(raw[key])
    return out


def check_kept(block: Any) -> None:
    """The shape of an ``official`` block in a reviosa-layout expression (ClassifyError, field relative to it)."""
    allowed = set(VERBATIM) | {"absent"}
    if not isinstance(block, dict) or set(block) - allowed:
        raise ClassifyError("", f"must be an object with keys among {sorted(allowed)}")
    absent = block.get("absent", [])
    if not isinstance(absent, list) or set(absent) - set(ABSENTABLE):
        raise ClassifyError("absent", f"lists keys among {list(ABSENTABLE)}")


def official_form(text: str, f: Fields, kept: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The full official JSON: core, a ``reviosa`` block for refinements it cannot express, the extra keys."""
    out = core(text, f, kept)
    got = classify(out)
    if not got.same_ids(f):  # format's parsers guarantee this; a hand-built expression may not
        raise ClassifyError(OFFICIAL_BLOCK, f"names actor {got.anno_ids} and target {got.target_anno_ids}, but the "
                            f"fields name actor {f.anno_ids} and target {f.target_anno_ids}")
    refinements: dict[str, Any] = {}
    if got.type != f.type:
        refinements["type"] = f.type
    if got.direction != f.direction:
        refinements["direction"] = f.direction
    if refinements:
        out[REVIOSA_BLOCK] = refinements
    out.update(extra)
    return out


def object_ids(form: dict[str, Any]) -> list[int]:
    """``subject/object.anno_id.object`` of an official form (empty for null): the official Target GT."""
    return _ids(form[ROLES_KEY]["anno_id"].get("object"), "object")


def all_anno_ids(form: dict[str, Any]) -> list[int]:
    """Every anno_id an official form names (top level, subject and object), first mention first."""
    roles = form[ROLES_KEY]["anno_id"]
    return list(dict.fromkeys(_ids(form.get("anno_id"), "anno_id") + _ids(roles.get("subject"), "subject")
                              + _ids(roles.get("object"), "object")))
