"""One synthetic video: sample a scene, plan its trajectories, render frames and exact visible masks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from reviosa.data.scene_graph import DIRECTED_KINDS, Interaction, SceneGraph, SceneObject
from reviosa.data.synthetic.config import SyntheticConfig
from reviosa.data.synthetic.expressions import Candidate, InteractionView, ObjectView, generate
from reviosa.data.synthetic.motion import Canvas, Track, apparent_motions, individual, interaction
from reviosa.data.synthetic.shapes import COLORS, ROTATION_INVARIANT, background, rasterise

#: an object counts as shown in a frame when this share of its full shape is visible
_SHOWN_FRACTION = 0.4
_MAX_TRIES = 40


@dataclass
class RenderedVideo:
    """A generated video in memory: frames, visible masks, scene graph and expressions."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    visible: np.ndarray  # (N, T, H, W) bool, object i's visible pixels; disjoint across objects
    full: np.ndarray  # (N, T, H, W) bool, object i's whole shape, occluded parts included
    graph: SceneGraph
    views: list[ObjectView]
    tracks: list[Track]
    radii: list[float]
    z_order: list[int]  # obj_ids back to front
    expressions: list[Candidate]


def video_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed of one video: depends on the split seed, split name and index only (not the split size)."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode("utf-8")), int(index)])


def render_video(cfg: SyntheticConfig, seed: np.random.SeedSequence) -> RenderedVideo:
    """Generate one video deterministically from its seed."""
    rng = np.random.default_rng(seed)
    canvas = Canvas(cfg.height, cfg.width, cfg.frames)
    objects = _sample_objects(cfg, rng)
    interactions = _sample_interactions(cfg, rng, len(objects))
    busy = {i for it in interactions for i in it.objects}
    objects = [o if o.obj_id in busy else o.model_copy(update={"motion": _sample_motion(cfg, rng, o, objects)})
               for o in objects]
    radii = [cfg.sizes[o.size] * canvas.scale * rng.uniform(0.93, 1.07) for o in objects]
    bg = background(rng, cfg.height, cfg.width, cfg.background == "textured")
    partner = {i: set(it.objects) for it in interactions for i in it.objects}
    best = None
    for _ in range(_MAX_TRIES):
        tracks = _plan(cfg, canvas, rng, objects, interactions, radii)
        z_order = [int(i) for i in rng.permutation(len(objects))]
        # Unrelated objects that touch would look like an interaction and hide each other: avoid them.
        contacts = _unrelated_contacts(tracks, radii, partner)
        if best is not None and best[0][0] and -max(contacts - cfg.frames // 8, 0) <= best[0][1]:
            continue  # cannot beat a plan that already shows everything; skip rendering it
        full, visible = _masks(cfg, objects, tracks, radii, z_order)
        shown = _shown_score(full, visible, objects, tracks, canvas)
        # A brief brush in passing is tolerated (dense scenes rarely avoid every one).
        score = (shown >= 1.0, -max(contacts - cfg.frames // 8, 0), shown)
        if best is None or score > best[0]:
            best = (score, tracks, z_order, full, visible)
        if score[:2] == (True, 0):
            break
    _, tracks, z_order, full, visible = best
    frames = np.repeat(bg[None], cfg.frames, axis=0)
    for i in z_order:  # back to front: later objects cover earlier ones
        frames[full[i]] = COLORS[objects[i].color]
    views = [ObjectView(o.obj_id, o.category, o.color, o.size, o.motion,
                        apparent_motions(tr, canvas, rotation_visible=o.category not in ROTATION_INVARIANT))
             for o, tr in zip(objects, tracks)]
    graph = SceneGraph(objects=objects, interactions=interactions)
    its = [InteractionView(it.kind, *(it.objects), it.directed) for it in interactions]
    return RenderedVideo(frames, visible, full, graph, views, tracks, radii, z_order, generate(views, its, rng))


def _sample_objects(cfg: SyntheticConfig, rng: np.random.Generator) -> list[SceneObject]:
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    shapes = [s for s in cfg.shapes if s not in ROTATION_INVARIANT] if cfg.motions == ["rotating"] else cfg.shapes
    if cfg.distinct_shapes:
        n = min(n, len(set(shapes)))
    taken: set[tuple[str, str, str]] = set()
    out = []
    while len(out) < n:
        # Every object gets a distinct (shape, colour, size), so a full description always identifies it.
        look = (str(rng.choice(shapes)), str(rng.choice(cfg.colors)), str(rng.choice(["small", "medium", "large"])))
        if cfg.distinct_shapes and any(look[0] == t[0] for t in taken):
            continue
        if look not in taken:
            taken.add(look)
            out.append(SceneObject(obj_id=len(out), category=look[0], color=look[1], size=look[2]))
    return out


def _sample_interactions(cfg: SyntheticConfig, rng: np.random.Generator, n: int) -> list[Interaction]:
    free = list(range(n))
    out = []
    for _ in range(cfg.max_interactions):
        if len(free) < 2 or rng.random() >= cfg.interaction_prob:
            continue
        kind = str(rng.choice(cfg.interaction_kinds))
        i, j = (int(x) for x in rng.choice(free, size=2, replace=False))
        free = [f for f in free if f not in (i, j)]
        out.append(Interaction(kind=kind, actor=i, target=j) if kind in DIRECTED_KINDS
                   else Interaction(kind=kind, pair=sorted([i, j])))
    return out


def _sample_motion(cfg: SyntheticConfig, rng: np.random.Generator, obj: SceneObject,
                   objects: list[SceneObject]) -> str:
    allowed = [m for m in cfg.motions if not (m == "rotating" and obj.category in ROTATION_INVARIANT)]
    if not allowed:  # only "rotating" configured and this is a circle (possible when it was freed later)
        allowed = ["still"]
    taken = [o.motion for o in objects if o.motion in allowed]
    if taken and rng.random() < cfg.shared_motion_prob:
        return str(rng.choice(taken))
    return str(rng.choice(allowed))


def _plan(cfg: SyntheticConfig, canvas: Canvas, rng: np.random.Generator, objects: list[SceneObject],
          interactions: list[Interaction], radii: list[float]) -> list[Track]:
    tracks: list[Track | None] = [None] * len(objects)
    for it in interactions:
        a, b = it.objects
        tracks[a], tracks[b] = interaction(it.kind, radii[a], radii[b], canvas, rng)
    for o in objects:
        if tracks[o.obj_id] is None:
            tracks[o.obj_id] = individual(o.motion or "still", radii[o.obj_id], canvas, rng, exit_prob=cfg.exit_prob,
                                          can_rotate=o.category not in ROTATION_INVARIANT)
    return tracks  # type: ignore[return-value]


def _masks(cfg: SyntheticConfig, objects: list[SceneObject], tracks: list[Track], radii: list[float],
           z_order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    n, T, H, W = len(objects), cfg.frames, cfg.height, cfg.width
    full = np.zeros((n, T, H, W), dtype=bool)
    for o, tr, r in zip(objects, tracks, radii):
        for t in range(T):
            hit = rasterise(o.category, tr.x[t], tr.y[t], r, tr.angle[t], H, W)
            if hit is not None:
                rows, cols, box = hit
                full[o.obj_id, t, rows, cols] = box
    visible = np.empty_like(full)
    covered = np.zeros((T, H, W), dtype=bool)
    for i in reversed(z_order):  # front to back: what is in front is already covered
        visible[i] = full[i] & ~covered
        covered |= full[i]
    return full, visible


def _unrelated_contacts(tracks: list[Track], radii: list[float], partner: dict[int, set[int]]) -> int:
    """Frames x pairs where two objects that do not interact come close enough to overlap."""
    n = len(tracks)
    xy = np.stack([np.stack([tr.x, tr.y], 1) for tr in tracks])  # (N, T, 2)
    count = 0
    for i in range(n):
        for j in range(i + 1, n):
            if j not in partner.get(i, ()):
                d = np.linalg.norm(xy[i] - xy[j], axis=1)
                count += int(np.sum(d < 0.9 * (radii[i] + radii[j])))
    return count


def _shown_score(full: np.ndarray, visible: np.ndarray, objects: list[SceneObject], tracks: list[Track],
                 canvas: Canvas) -> float:
    """1.0 when every object is clearly shown in enough frames and moves as labelled; lower is worse."""
    area_full = full.sum(axis=(2, 3)).astype(np.float64)
    area_vis = visible.sum(axis=(2, 3)).astype(np.float64)
    shown = (area_vis >= _SHOWN_FRACTION * np.maximum(area_full, 1)) & (area_vis >= 6)
    # A straight mover may leave the frame, so it needs to be shown in fewer frames.
    need = np.array([0.3 if o.motion in ("left", "right", "up", "down") else 0.6 for o in objects])
    frac = shown.mean(axis=1)
    score = float(np.min(np.minimum(frac / need, 1.0)))
    for o, tr in zip(objects, tracks):
        if o.motion is not None and o.motion not in apparent_motions(
                tr, canvas, rotation_visible=o.category not in ROTATION_INVARIANT):
            score = min(score, 0.5)
    return score
