"""The four model stages of one video: prompts in, validated answers (or failure records) out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from reviosa.annotate.answering import Answerer
from reviosa.annotate.config import AnnotateConfig
from reviosa.annotate.overlay import fit, highlight, image_part, label_objects, sample_indices
from reviosa.annotate.prompts import render
from reviosa.annotate.schemas import (
    DirectedExpressions,
    InteractionAnswer,
    Interactions,
    MotionGroups,
    ObjectDescription,
    ObjectExpressions,
    PairExpressions,
)
from reviosa.data.format import InterRVOSDataset, Video


@dataclass
class VideoJob:
    """One video's inputs; frames and masks are read only when a vision stage needs them."""

    ds: InterRVOSDataset
    video: Video
    cfg: AnnotateConfig
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def objects(self) -> set[int]:
        return set(self.video.objects)

    @cached_property
    def masks(self) -> dict[int, np.ndarray]:
        return {o: self.ds.object_masks(self.video, o) for o in sorted(self.video.objects)}

    def frames(self, indices: list[int]) -> np.ndarray:
        return self.ds.read_frames(self.video, indices)

    def where(self, **kw: Any) -> dict[str, Any]:
        return {"video": self.video.name, **kw}


def object_list(descriptions: dict[int, dict[str, Any]]) -> str:
    """``[i] category: appearance; motion`` lines for the text prompts."""
    return "\n".join(f"[{i}] {d['category']}: {d['appearance']}; {d['motion']}"
                     for i, d in sorted(descriptions.items()))


async def describe_object(ans: Answerer, job: VideoJob, obj: int) -> dict[str, Any] | None:
    """Stage 1: appearance and motion of one object, shown highlighted on sampled frames."""
    v, k = job.cfg.prompt_version, job.cfg.frames_per_object
    content: list[dict[str, Any]] | str
    if job.cfg.backend_for(1) == "offline":
        content = render("describe_object", v, index=obj, n_frames=k)
    else:
        mask = job.masks[obj]
        idx = sample_indices(mask.reshape(len(mask), -1).any(1), k)
        frames = job.frames(idx)
        parts = [image_part(fit(highlight(f, mask[i]), job.cfg.image_max_side)) for f, i in zip(frames, idx)]
        content = [{"type": "text", "text": render("describe_object", v, index=obj, n_frames=len(idx))}, *parts]
    out = await ans.ask(1, ObjectDescription, content, objects=job.objects,
                        task={"kind": "describe", "video": job.video.name, "obj": obj}, where=job.where(obj=obj))
    return _keep(job, out)


async def object_expressions(ans: Answerer, job: VideoJob, obj: int, descriptions: dict[int, dict[str, Any]]
                             ) -> dict[str, Any] | None:
    """Stage 2: appearance-only, motion-only and combined expressions for one object."""
    text = render("object_expressions", job.cfg.prompt_version, objects=object_list(descriptions), index=obj,
                  max_n=job.cfg.max_expressions_per_kind)
    out = await ans.ask(2, ObjectExpressions, text, objects=job.objects,
                        task={"kind": "object_expressions", "video": job.video.name, "obj": obj},
                        where=job.where(obj=obj))
    return _keep(job, out)


async def motion_groups(ans: Answerer, job: VideoJob, descriptions: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage 2: multi-object expressions for objects that share a motion pattern."""
    text = render("motion_groups", job.cfg.prompt_version, objects=object_list(descriptions))
    out = await ans.ask(2, MotionGroups, text, objects=set(descriptions),
                        task={"kind": "motion_groups", "video": job.video.name, "objects": sorted(descriptions)},
                        where=job.where(obj="groups"))
    answer = _keep(job, out)
    return answer["groups"] if answer else []


async def find_interactions(ans: Answerer, job: VideoJob) -> list[dict[str, Any]]:
    """Stage 3: interactions between the labelled objects, with roles and a role-swapped caption."""
    v, k = job.cfg.prompt_version, job.cfg.frames_per_object
    listing = "\n".join(f"[{o}]" for o in sorted(job.objects))
    content: list[dict[str, Any]] | str
    if job.cfg.backend_for(3) == "offline":
        content = render("interactions", v, n_frames=k, objects=listing)
    else:
        present = np.any([m.reshape(len(m), -1).any(1) for m in job.masks.values()], axis=0)
        idx = sample_indices(present, k)
        frames = job.frames(idx)
        parts = [image_part(fit(label_objects(f, {o: m[i] for o, m in job.masks.items()}), job.cfg.image_max_side))
                 for f, i in zip(frames, idx)]
        content = [{"type": "text", "text": render("interactions", v, n_frames=len(idx), objects=listing)}, *parts]
    out = await ans.ask(3, Interactions, content, objects=job.objects,
                        task={"kind": "interactions", "video": job.video.name}, where=job.where(obj="interactions"))
    answer = _keep(job, out)
    return answer["interactions"] if answer else []


async def interaction_expressions(ans: Answerer, job: VideoJob, it: dict[str, Any],
                                  descriptions: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Stage 4: class-level and appearance-level expressions of one interaction, both role directions."""
    inter = InteractionAnswer.model_validate(it)
    a, b = inter.objects
    known = {o: descriptions[o] for o in (a, b) if o in descriptions}
    if len(known) < 2:
        job.failures.append({**job.where(obj=[a, b]), "stage": 4, "kind": "skipped",
                             "error": "an object of this interaction has no description (stage 1 failed)", "raw": None})
        return None
    listing, v = object_list(known), job.cfg.prompt_version
    if inter.direction == "unidirectional":
        text = render("interaction_directed", v, objects=listing, caption=inter.caption,
                      swapped_caption=inter.swapped_caption, actor=a, target=b)
        out = await ans.ask(4, DirectedExpressions, text, objects=job.objects, where=job.where(obj=[a, b]),
                            task={"kind": "interaction_directed", "video": job.video.name, "actor": a, "target": b})
    else:
        text = render("interaction_pair", v, objects=listing, caption=inter.caption, first=a, second=b)
        out = await ans.ask(4, PairExpressions, text, objects=job.objects, where=job.where(obj=[a, b]),
                            task={"kind": "interaction_pair", "video": job.video.name, "first": a, "second": b})
    return _keep(job, out)


def _keep(job: VideoJob, out: Any) -> dict[str, Any] | None:
    if out.failure is not None:
        job.failures.append(out.failure)
        return None
    return out.answer.model_dump(mode="json")


async def annotate_video(ans: Answerer, job: VideoJob) -> dict[str, Any]:
    """Run stages 1-4 on one video; the record holds every stage's answers and every failure."""
    objs = sorted(job.objects)
    described, interactions = await asyncio.gather(
        asyncio.gather(*(describe_object(ans, job, o) for o in objs)), find_interactions(ans, job))
    descriptions = {o: d for o, d in zip(objs, described) if d is not None}
    singles = asyncio.gather(*(object_expressions(ans, job, o, descriptions) for o in sorted(descriptions)))
    groups = motion_groups(ans, job, descriptions) if len(descriptions) >= 2 else _none()
    pairs = asyncio.gather(*(interaction_expressions(ans, job, it, descriptions) for it in interactions))
    singles_out, groups_out, pairs_out = await asyncio.gather(singles, groups, pairs)
    exprs = dict(zip(sorted(descriptions), singles_out))
    return {
        "video": job.video.name,
        "prompt_version": job.cfg.prompt_version,
        "objects": {str(o): {"description": descriptions.get(o), "expressions": exprs.get(o)} for o in objs},
        "groups": groups_out,
        "interactions": [{**it, "expressions": e} for it, e in zip(interactions, pairs_out)],
        "failures": job.failures,
    }


async def _none() -> list:
    return []
