"""The offline backend: answers every stage from the synthetic world's scene graph, with no model at all.

It returns the same JSON text a model would, so the answers pass through the same validation, and the
demo and tests run without a server. Interactions keep the scene graph's roles exactly.
"""

from __future__ import annotations

import json
from typing import Any

from reviosa.annotate.backends import BackendError, ChatRequest, ChatResponse
from reviosa.data.scene_graph import SceneGraph, SceneObject

#: interaction kind -> (active participle, passive phrase); the actor is the subject of the first
VERBS: dict[str, tuple[str, str]] = {
    "chases": ("chasing", "being chased by"),
    "pushes": ("pushing", "being pushed by"),
    "hits": ("hitting", "being hit by"),
    "follows": ("following", "being followed by"),
    "circles": ("circling", "being circled by"),
}
MOTIONS: dict[str, str] = {
    "still": "staying still", "left": "moving left", "right": "moving right", "up": "moving up",
    "down": "moving down", "bouncing": "bouncing around", "rotating": "rotating in place",
}
_COUNT = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


class OfflineBackend:
    """Structured answers derived from ``{video: SceneGraph}``."""

    def __init__(self, graphs: dict[str, SceneGraph]):
        self.graphs = graphs

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer the request's task from the scene graph of its video."""
        task = request.task
        graph = self.graphs.get(task.get("video", ""))
        if graph is None:
            raise BackendError(f"offline backend: no scene graph for video {task.get('video')!r}")
        handler = getattr(self, "_" + task.get("kind", ""), None)
        if handler is None:
            raise BackendError(f"offline backend: unknown task kind {task.get('kind')!r}")
        return ChatResponse(json.dumps(handler(graph, task)))

    async def aclose(self) -> None:
        """Nothing to close."""

    # ------------------------------------------------------------------ stages
    def _describe(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        o = g.object(task["obj"])
        return {"category": o.category, "appearance": f"a {o.size} {o.color} {o.category}",
                "motion": motion_phrase(g, o.obj_id)}

    def _object_expressions(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        o = g.object(task["obj"])
        phrase = motion_phrase(g, o.obj_id)
        return {"appearance": appearance_names(g, o), "motion": [f"the object {phrase}"],
                "combined": [f"the {o.color} {o.category} {phrase}"]}

    def _motion_groups(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        by_motion: dict[str, list[int]] = {}
        for o in g.objects:
            if o.motion is not None and o.obj_id in task["objects"]:
                by_motion.setdefault(o.motion, []).append(o.obj_id)
        groups = [{"objects": ids, "motion": MOTIONS[m], "expression": f"the {_COUNT[len(ids)]} shapes {MOTIONS[m]}"}
                  for m, ids in sorted(by_motion.items()) if 2 <= len(ids) <= 9]
        return {"groups": groups}

    def _interactions(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        out = []
        for it in g.interactions:
            if it.directed:
                active, passive = VERBS[it.kind]
                out.append({"direction": "unidirectional", "actor": it.actor, "target": it.target,
                            "caption": f"Object [{it.actor}] is {active} object [{it.target}]",
                            "swapped_caption": f"Object [{it.target}] is {passive} object [{it.actor}]"})
            else:
                a, b = it.pair
                out.append({"direction": "bidirectional", "actor": a, "target": b,
                            "caption": f"Object [{a}] and object [{b}] are moving together", "swapped_caption": ""})
        return {"interactions_exist": bool(out), "interactions": out}

    def _interaction_directed(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        a, t = g.object(task["actor"]), g.object(task["target"])
        kind = next((it.kind for it in g.interactions if it.directed and (it.actor, it.target) == (a.obj_id, t.obj_id)),
                    None)
        active, passive = VERBS.get(kind or "", ("interacting with", "being approached by"))
        return {"class_level": f"the {a.category} {active} the {t.category}",
                "appearance_level": f"the {a.color} {a.category} {active} the {t.color} {t.category}",
                "swapped_class_level": f"the {t.category} {passive} the {a.category}",
                "swapped_appearance_level": f"the {t.color} {t.category} {passive} the {a.color} {a.category}"}

    def _interaction_pair(self, g: SceneGraph, task: dict[str, Any]) -> dict[str, Any]:
        a, b = g.object(task["first"]), g.object(task["second"])
        return {"class_level": f"the {a.category} and the {b.category} moving together",
                "appearance_level": f"the {a.color} {a.category} and the {b.color} {b.category} moving together"}


def motion_phrase(g: SceneGraph, obj_id: int) -> str:
    """How one object moves: its own motion, or the interaction that drives it."""
    o = g.object(obj_id)
    if o.motion is not None:
        return MOTIONS[o.motion]
    for it in g.interactions:
        if it.directed and it.actor == obj_id:
            return f"{VERBS[it.kind][0]} another shape"
        if it.directed and it.target == obj_id:
            return f"{VERBS[it.kind][1]} another shape"
        if not it.directed and obj_id in it.pair:
            return "moving together with another shape"
    return "staying still"


def appearance_names(g: SceneGraph, o: SceneObject) -> list[str]:
    """Appearance-only names of ``o`` that no other object of the video shares (the fullest one if none is unique)."""
    def names(x: SceneObject) -> list[str]:
        return [f"the {x.color} {x.category}", f"the {x.size} {x.category}", f"the {x.size} {x.color} {x.category}"]

    others = {n for x in g.objects if x.obj_id != o.obj_id for n in names(x)}
    unique = [n for n in names(o) if n not in others]
    return unique[:2] or names(o)[-1:]
