"""Referring expressions from a scene graph: templates with varied wording, kept unambiguous.

Kinds written (``kind`` in each expression's extra fields):

- ``appearance``: "the large red circle" (only when that description fits exactly one object);
- ``motion``: "the object moving to the left" / "the shapes moving up" (type ``multi`` when several
  objects share the motion; only when no other object could be seen doing it too);
- ``appearance+motion``: "the red circle moving to the left";
- one of the interaction kinds (type ``interaction``), at ``level`` ``class`` ("the circle chasing the
  square") and ``appearance`` ("the red circle chasing the small blue square"). Directed ones come in
  both ``role`` directions: ``active`` (the actor is the subject) and ``passive`` ("the square being
  chased by the circle": the square is the expression's actor, the circle its target). ``moves_with``
  is bidirectional: both objects are the actor side, no target.

A text that would describe two different referent sets is dropped entirely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: participle phrases: they read right after a singular or a plural noun
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "still": ("staying still", "not moving", "standing still", "resting in place"),
    "left": ("moving to the left", "moving left", "going left", "heading to the left"),
    "right": ("moving to the right", "moving right", "going right", "heading to the right"),
    "up": ("moving up", "moving upwards", "going up", "rising"),
    "down": ("moving down", "moving downwards", "going down", "sinking"),
    "bouncing": ("bouncing", "bouncing up and down", "hopping up and down"),
    "rotating": ("rotating", "spinning", "rotating in place", "spinning around"),
}

#: directed templates: ``{a}`` is the actor of the interaction, ``{b}`` its target
ACTIVE: dict[str, tuple[str, ...]] = {
    "chases": ("{a} chasing {b}", "{a} running after {b}", "{a} that is chasing {b}", "{a} trying to catch {b}"),
    "pushes": ("{a} pushing {b}", "{a} pushing {b} along", "{a} shoving {b}"),
    "hits": ("{a} hitting {b}", "{a} crashing into {b}", "{a} that strikes {b}", "{a} bumping into {b}"),
    "follows": ("{a} following {b}", "{a} trailing behind {b}", "{a} that follows {b}"),
    "circles": ("{a} circling {b}", "{a} orbiting {b}", "{a} going around {b}", "{a} moving in circles around {b}"),
}
PASSIVE: dict[str, tuple[str, ...]] = {
    "chases": ("{b} being chased by {a}", "{b} fleeing from {a}", "{b} chased by {a}", "{b} running away from {a}"),
    "pushes": ("{b} being pushed by {a}", "{b} pushed along by {a}", "{b} that is pushed by {a}"),
    "hits": ("{b} being hit by {a}", "{b} knocked away by {a}", "{b} struck by {a}"),
    "follows": ("{b} being followed by {a}", "{b} leading {a}", "{b} followed by {a}"),
    "circles": ("{b} being circled by {a}", "{b} orbited by {a}", "{b} that {a} circles around"),
}
TOGETHER: tuple[str, ...] = ("{a} and {b} moving together", "{a} and {b} travelling side by side",
                             "{a} moving together with {b}")

NOUN_SINGULAR = ("object", "shape", "thing")
NOUN_PLURAL = ("objects", "shapes", "things")

#: description forms -> the attributes they name
FORMS: dict[str, tuple[str, ...]] = {
    "category": ("category",),
    "color": ("color", "category"),
    "size": ("size", "category"),
    "full": ("size", "color", "category"),
    "color_only": ("color",),
}


@dataclass(frozen=True)
class ObjectView:
    """What expressions may say about one object."""

    obj_id: int
    category: str
    color: str
    size: str
    motion: str | None  # its individual motion; None when an interaction drives it
    apparent: frozenset[str]  # every motion word a viewer could use for it


def appearance_view(obj) -> ObjectView:
    """A dataset object (``ObjectInfo`` of a synthetic split) as an appearance-only ``ObjectView``."""
    return ObjectView(obj.obj_id, obj.category, obj.attributes["color"], obj.attributes["size"], None, frozenset())


@dataclass(frozen=True)
class InteractionView:
    """An interaction; ``actor``/``target`` are the pair's order for bidirectional kinds."""

    kind: str
    actor: int
    target: int
    directed: bool


@dataclass
class Candidate:
    """One generated expression before ids are assigned."""

    text: str
    type: str  # single | multi | interaction
    actors: tuple[int, ...]
    targets: tuple[int, ...] = ()
    direction: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def vocabulary() -> list[str]:
    """Every word an expression can contain, given the shipped shapes, colours and sizes (sorted)."""
    from reviosa.data.synthetic.shapes import COLORS, SHAPES

    texts = [*NOUN_SINGULAR, *NOUN_PLURAL, *COLORS, *SHAPES, *(_plural(s) for s in SHAPES), "the",
             "small", "medium", "large", "shape", "object"]
    for group in (MOTION_PHRASES.values(), ACTIVE.values(), PASSIVE.values(), [TOGETHER]):
        texts += [t for options in group for t in options]
    return sorted({w for t in texts for w in t.replace("{a}", "").replace("{b}", "").split()})


def describe(obj: ObjectView, form: str) -> str:
    """Noun phrase (with "the") naming ``obj`` by one description form."""
    if form == "color_only":
        return f"the {obj.color} {_pick_fixed(obj, ('shape', 'object'))}"
    return "the " + " ".join(getattr(obj, a) for a in FORMS[form])


def _pick_fixed(obj: ObjectView, options: tuple[str, ...]) -> str:
    return options[obj.obj_id % len(options)]  # stable per object so one description never has two spellings


def matches(form: str, a: ObjectView, b: ObjectView) -> bool:
    """True when the description form of ``a`` also fits ``b`` (the phrase cannot tell them apart)."""
    return all(getattr(a, k) == getattr(b, k) for k in FORMS[form])


def _plural(category: str) -> str:
    return category + ("es" if category.endswith(("s", "x")) else "s")


def generate(objects: list[ObjectView], interactions: list[InteractionView],
             rng: np.random.Generator) -> list[Candidate]:
    """All unambiguous expressions for one video, in a fixed order for a given ``rng`` state."""
    out: list[Candidate] = []
    by_id = {o.obj_id: o for o in objects}

    # Appearance only: a description that fits exactly one object.
    for o in objects:
        unique = [f for f in FORMS if not any(matches(f, o, p) for p in objects if p is not o)]
        if unique:
            form = unique[int(rng.integers(len(unique)))]
            out.append(Candidate(describe(o, form), "single", (o.obj_id,), extra={"kind": "appearance"}))

    # Motion only: every object with that motion, and nobody else could be said to do it.
    for m in MOTION_PHRASES:
        referents = [o for o in objects if o.motion == m]
        if not referents or any(m in p.apparent for p in objects if p.motion != m):
            continue
        phrase = _choice(rng, MOTION_PHRASES[m])
        cats = {o.category for o in referents}
        if len(referents) == 1:
            noun = _choice(rng, NOUN_SINGULAR)
            out.append(Candidate(f"the {noun} {phrase}", "single", (referents[0].obj_id,), extra={"kind": "motion"}))
        else:
            noun = _plural(next(iter(cats))) if len(cats) == 1 and rng.random() < 0.5 else _choice(rng, NOUN_PLURAL)
            out.append(Candidate(f"the {noun} {phrase}", "multi", tuple(o.obj_id for o in referents),
                                 extra={"kind": "motion"}))

    # Appearance and motion together, e.g. "the red circle moving up".
    for o in objects:
        if o.motion is None:
            continue
        ok = [f for f in ("category", "color") if not any(
            matches(f, o, p) and (p.motion == o.motion or o.motion in p.apparent) for p in objects if p is not o)]
        if ok:
            form = ok[int(rng.integers(len(ok)))]
            text = f"{describe(o, form)} {_choice(rng, MOTION_PHRASES[o.motion])}"
            out.append(Candidate(text, "single", (o.obj_id,), extra={"kind": "appearance+motion"}))

    # Interactions: class level and appearance level, both role directions for directed kinds.
    for it in interactions:
        a, b = by_id[it.actor], by_id[it.target]
        # Two circles cannot be told apart by class: "the circle chasing the circle" is skipped.
        for level in ("class", "appearance") if a.category != b.category else ("appearance",):
            da, db = _interaction_descriptions(a, b, level, rng)
            if it.directed:
                text = _choice(rng, ACTIVE[it.kind]).format(a=da, b=db)
                out.append(Candidate(text, "interaction", (a.obj_id,), (b.obj_id,), "unidirectional",
                                     {"kind": it.kind, "level": level, "role": "active"}))
                text = _choice(rng, PASSIVE[it.kind]).format(a=da, b=db)
                out.append(Candidate(text, "interaction", (b.obj_id,), (a.obj_id,), "unidirectional",
                                     {"kind": it.kind, "level": level, "role": "passive"}))
            else:
                first, second = (da, db) if rng.random() < 0.5 else (db, da)
                text = _choice(rng, TOGETHER).format(a=first, b=second)
                out.append(Candidate(text, "interaction", tuple(sorted((a.obj_id, b.obj_id))), (), "bidirectional",
                                     {"kind": it.kind, "level": level}))
    return _drop_ambiguous(out)


def _interaction_descriptions(a: ObjectView, b: ObjectView, level: str, rng: np.random.Generator) -> tuple[str, str]:
    if level == "class":
        return describe(a, "category"), describe(b, "category")
    forms = ("color", "size", "full")
    da, db = describe(a, _choice(rng, forms)), describe(b, _choice(rng, forms))
    if da == db or a.category == b.category:
        return describe(a, "full"), describe(b, "full")  # appearances are unique per video
    return da, db


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _drop_ambiguous(cands: list[Candidate]) -> list[Candidate]:
    referents: dict[str, set[tuple]] = {}
    for c in cands:
        referents.setdefault(c.text, set()).add((c.type, c.actors, c.targets))
    seen: set[str] = set()
    out = []
    for c in cands:
        if len(referents[c.text]) == 1 and c.text not in seen:
            seen.add(c.text)
            out.append(c)
    return out
