"""Ground-truth scene graphs: what each object is, how it moves and which objects interact.

The synthetic world writes one per video (``scene_graph.json`` beside ``meta_expressions.json``); the
offline annotation backend derives the LLM stages' structured answers from it, and tests check that
annotated roles match it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from reviosa.data.atomic import atomic_write_text

Motion = Literal["still", "left", "right", "up", "down", "bouncing", "rotating"]
InteractionKind = Literal["chases", "pushes", "hits", "follows", "circles", "moves_with"]
Size = Literal["small", "medium", "large"]

#: Interactions with an actor and a target; the others are bidirectional pairs without roles.
DIRECTED_KINDS: frozenset[str] = frozenset({"chases", "pushes", "hits", "follows", "circles"})


class SceneObject(BaseModel):
    """One object: identity in the dataset plus the attributes expressions may mention."""

    obj_id: int
    category: str  # the shape: circle, square, triangle, star, ...
    color: str
    size: Size
    motion: Motion | None = None  # individual motion; None when an interaction drives it


class Interaction(BaseModel):
    """A directed (actor -> target) or bidirectional (pair, no roles) interaction."""

    kind: InteractionKind
    actor: int | None = None
    target: int | None = None
    pair: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_match_kind(self) -> "Interaction":
        if self.kind in DIRECTED_KINDS:
            if self.actor is None or self.target is None or self.actor == self.target or self.pair:
                raise ValueError(f"{self.kind!r} needs distinct actor and target and no pair")
        elif len(self.pair) != 2 or self.pair[0] == self.pair[1] or self.actor is not None or self.target is not None:
            raise ValueError(f"{self.kind!r} is bidirectional: give 'pair' of two distinct objects, no roles")
        return self

    @property
    def directed(self) -> bool:
        return self.kind in DIRECTED_KINDS

    @property
    def objects(self) -> list[int]:
        return [self.actor, self.target] if self.directed else list(self.pair)  # type: ignore[list-item]


class SceneGraph(BaseModel):
    """All objects and interactions of one video."""

    objects: list[SceneObject]
    interactions: list[Interaction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_objects(self) -> "SceneGraph":
        ids = [o.obj_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate obj_id in {ids}")
        for it in self.interactions:
            unknown = [i for i in it.objects if i not in ids]
            if unknown:
                raise ValueError(f"interaction {it.kind!r} names unknown objects {unknown}")
        return self

    def object(self, obj_id: int) -> SceneObject:
        """The object with this id."""
        return next(o for o in self.objects if o.obj_id == obj_id)


def save_scene_graphs(path: str | os.PathLike, graphs: dict[str, SceneGraph]) -> None:
    """Write ``{video: scene graph}`` atomically."""
    atomic_write_text(path, json.dumps({v: g.model_dump(mode="json") for v, g in graphs.items()}, indent=1))


def load_scene_graphs(path: str | os.PathLike) -> dict[str, SceneGraph]:
    """Read and validate ``{video: scene graph}``."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {v: SceneGraph.model_validate(g) for v, g in raw.items()}
