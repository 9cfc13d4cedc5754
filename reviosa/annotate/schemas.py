"""Pydantic schemas of every stage's model answer; object indices are checked against the video's objects.

Validate with ``Model.model_validate_json(text, context={"objects": {0, 1, 2}})``; the JSON schema sent
as ``response_format`` comes from :func:`response_schema`.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _check_index(value: int, info: ValidationInfo) -> int:
    known = (info.context or {}).get("objects")
    if known is not None and value not in known:
        raise ValueError(f"object [{value}] does not exist; the objects are {sorted(known)}")
    return value


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectDescription(_Answer):
    """Stage 1: what one highlighted object is, looks like and does."""

    category: Text
    appearance: Text
    motion: Text


class ObjectExpressions(_Answer):
    """Stage 2: referring expressions for one object, by the cue they use."""

    appearance: list[Text] = Field(min_length=1, max_length=3)
    motion: list[Text] = Field(min_length=1, max_length=3)
    combined: list[Text] = Field(min_length=1, max_length=3)


class MotionGroup(_Answer):
    """Objects that share one motion pattern and an expression referring to all of them."""

    objects: list[int] = Field(min_length=2, max_length=9)
    motion: Text
    expression: Text

    @field_validator("objects")
    @classmethod
    def _known_distinct(cls, v: list[int], info: ValidationInfo) -> list[int]:
        for i in v:
            _check_index(i, info)
        if len(set(v)) != len(v):
            raise ValueError(f"objects {v} repeat an index")
        return sorted(v)


class MotionGroups(_Answer):
    """Stage 2: multi-object expressions (an empty list when no objects move alike)."""

    groups: list[MotionGroup] = Field(max_length=6)


class InteractionAnswer(_Answer):
    """One interaction; for a bidirectional one ``actor``/``target`` are just the pair."""

    direction: Literal["unidirectional", "bidirectional"]
    actor: int
    target: int
    caption: Text
    swapped_caption: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]

    @field_validator("actor", "target")
    @classmethod
    def _known(cls, v: int, info: ValidationInfo) -> int:
        return _check_index(v, info)

    @model_validator(mode="after")
    def _roles(self) -> "InteractionAnswer":
        if self.actor == self.target:
            raise ValueError(f"actor and target are both object [{self.actor}]")
        if self.direction == "unidirectional" and not self.swapped_caption:
            raise ValueError("a unidirectional interaction needs the role-swapped caption")
        return self

    @property
    def objects(self) -> tuple[int, int]:
        """(actor, target), or the pair in ascending order when bidirectional."""
        if self.direction == "bidirectional":
            return (min(self.actor, self.target), max(self.actor, self.target))
        return (self.actor, self.target)


class Interactions(_Answer):
    """Stage 3: whether objects interact, and how."""

    interactions_exist: bool
    interactions: list[InteractionAnswer] = Field(max_length=8)

    @model_validator(mode="after")
    def _consistent(self) -> "Interactions":
        if self.interactions_exist != bool(self.interactions):
            raise ValueError("interactions_exist must be true exactly when the list is non-empty")
        seen = set()
        for it in self.interactions:
            if (it.direction, it.objects) in seen:
                raise ValueError(f"interaction {it.direction} {list(it.objects)} is listed twice")
            seen.add((it.direction, it.objects))
        return self


class DirectedExpressions(_Answer):
    """Stage 4, unidirectional: expressions with the actor as subject, and role-swapped ones."""

    class_level: Text
    appearance_level: Text
    swapped_class_level: Text
    swapped_appearance_level: Text


class PairExpressions(_Answer):
    """Stage 4, bidirectional: expressions referring to both objects together."""

    class_level: Text
    appearance_level: Text


def limit_schema(schema: dict[str, Any], *, max_items: int | None = None, max_chars: int | None = None
                 ) -> dict[str, Any]:
    """Tighten a schema for the model: at most ``max_items`` per list of texts or groups, ``max_chars`` per text.

    Validation keeps the looser bounds of the pydantic model; the tighter schema only bounds what a
    constrained decoder generates (and so the tokens a small model spends).
    """
    out = copy.deepcopy(schema)

    def walk(node: Any, key: str = "") -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "string" and "enum" not in node and max_chars is not None:
            node["maxLength"] = min(node.get("maxLength", max_chars), max_chars)
        if node.get("type") == "array" and max_items is not None and (
                node.get("items", {}).get("type") == "string" or key == "groups"):
            node["maxItems"] = max(node.get("minItems", 0), min(node.get("maxItems", max_items), max_items))
        for k, v in node.get("properties", {}).items():
            walk(v, k)
        walk(node.get("items"), "")

    walk(out)
    return out


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with references inlined, titles dropped and no extra properties (strict)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            out = {k: walk(v) for k, v in node.items() if k not in ("title", "description")}
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)
