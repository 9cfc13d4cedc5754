"""Write generated videos as an InterRVOS split (MeViS layout plus ``scene_graph.json``), resumably.

Each finished video leaves a small part file under ``.synth_parts/`` (its metadata, RLE masks and scene
graph, stamped with a fingerprint of the config and seed); an interrupted run picks up from those, and
the split's JSON files are assembled and written atomically at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from reviosa.data.format import (
    FRAMES_DIR,
    SCENE_GRAPH_FILE,
    Direction,
    Expression,
    ExpressionType,
    InterRVOSDataset,
    ObjectInfo,
    Video,
)
from reviosa.data.names import check_component, inside
from reviosa.data.rle import encode_track
from reviosa.data.scene_graph import SceneGraph, save_scene_graphs
from reviosa.data.synthetic.config import SyntheticConfig
from reviosa.data.synthetic.world import render_video, video_seed

PARTS_DIR = ".synth_parts"
#: bump when the generator's output for a given config and seed changes, so stale parts are not reused
GENERATOR_VERSION = 1
#: anno_id = index * ANNO_STRIDE + obj_id + 1: unique in a split and independent of the split size
ANNO_STRIDE = 10


def video_name(split: str, index: int) -> str:
    """Name of the ``index``-th video of a split."""
    return f"{split or 'synth'}_{index:05d}"


def fingerprint(cfg: SyntheticConfig, seed: int, split: str) -> str:
    """Hash of everything that determines a video's content."""
    doc = json.dumps({"cfg": cfg.model_dump(mode="json"), "seed": seed, "split": split, "v": GENERATOR_VERSION},
                     sort_keys=True)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:16]


def build_video(cfg: SyntheticConfig, seed: int, split: str, index: int, root: Path | None = None) -> dict[str, Any]:
    """Render video ``index``; write its JPEG frames under ``root`` (if given); return its JSON part."""
    from reviosa.data.video import write_jpeg

    name = video_name(split, index)
    rv = render_video(cfg, video_seed(seed, split, index))
    frames = [f"{t:05d}" for t in range(cfg.frames)]
    anno = {o.obj_id: index * ANNO_STRIDE + o.obj_id + 1 for o in rv.graph.objects}
    video = Video(name, frames, height=cfg.height, width=cfg.width)
    video.objects = {o.obj_id: ObjectInfo(o.obj_id, anno[o.obj_id], o.category,
                                          {"color": o.color, "size": o.size, "motion": o.motion})
                     for o in rv.graph.objects}
    for k, c in enumerate(rv.expressions):
        video.expressions[str(k)] = Expression(
            str(k), c.text, list(c.actors), [anno[i] for i in c.actors], ExpressionType(c.type),
            Direction(c.direction) if c.direction else None, list(c.targets), [anno[i] for i in c.targets],
            dict(c.extra))
    if root is not None:
        for t, f in enumerate(frames):
            write_jpeg(inside(root, FRAMES_DIR, name, f"{f}.jpg", what="video name"), rv.frames[t],
                       quality=cfg.jpeg_quality)
    return {"name": name, "video": _video_to_part(video), "graph": rv.graph.model_dump(mode="json"),
            "masks": {str(anno[o.obj_id]): encode_track(rv.visible[o.obj_id]) for o in rv.graph.objects}}


def _video_to_part(video: Video) -> dict[str, Any]:
    return {"name": video.name, "frames": video.frames, "height": video.height, "width": video.width,
            "objects": [dataclasses.asdict(o) for o in video.objects.values()],
            "expressions": [{**dataclasses.asdict(e), "type": e.type.value,
                             "direction": e.direction.value if e.direction else None}
                            for e in video.expressions.values()]}


def _video_from_part(raw: dict[str, Any]) -> Video:
    objects = {o["obj_id"]: ObjectInfo(**o) for o in raw["objects"]}
    exps = {}
    for e in raw["expressions"]:
        e = {**e, "type": ExpressionType(e["type"]), "direction": Direction(e["direction"]) if e["direction"] else None}
        exps[e["exp_id"]] = Expression(**e)
    return Video(raw["name"], raw["frames"], exps, objects, raw["height"], raw["width"])


def _job(args: tuple[SyntheticConfig, int, str, int, str, str]) -> dict[str, Any]:
    cfg, seed, split, index, root, stamp = args
    from reviosa.data.atomic import atomic_write_text

    part = build_video(cfg, seed, split, index, Path(root))
    part["fingerprint"] = stamp
    # The part is written after the frames, so an existing part means the whole video is on disk.
    atomic_write_text(_part_path(Path(root), part["name"]), json.dumps(part, separators=(",", ":")))
    return part


def _part_path(root: Path, name: str) -> Path:
    return inside(root, PARTS_DIR, f"{name}.json", what="video name")


def _load_part(root: Path, split: str, index: int, stamp: str) -> dict[str, Any] | None:
    path = _part_path(root, video_name(split, index))
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return part if part.get("fingerprint") == stamp else None


def generate_split(out: str | os.PathLike, cfg: SyntheticConfig, videos: int, seed: int = 0, *, split: str = "",
                   workers: int = 1, progress: bool = True) -> InterRVOSDataset:
    """Generate ``videos`` videos into the split folder ``out`` and return the loaded, validated split.

    ``split`` names the split (it seeds its videos and prefixes their names), so train and val splits
    made with one seed differ. Video ``i`` is the same whatever ``videos`` is.
    """
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    check_component(video_name(split, 0), "split name")  # it prefixes every video folder
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    stamp = fingerprint(cfg, seed, split)
    parts: dict[int, dict[str, Any]] = {}
    todo = []
    for i in range(videos):
        part = _load_part(root, split, i, stamp)
        if part is not None:
            parts[i] = part
        else:
            todo.append(i)
    bar = tqdm(total=videos, initial=videos - len(todo), desc=f"synth {split or root.name}", unit="video",
               disable=not progress)
    jobs = [(cfg, seed, split, i, str(root), stamp) for i in todo]
    if workers == 1 or len(jobs) < 2:
        for i, job in zip(todo, jobs):
            parts[i] = _job(job)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, part in zip(todo, pool.map(_job, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))):
                parts[i] = part
                bar.update()
    bar.close()

    ds = InterRVOSDataset(root, {}, {})
    graphs: dict[str, SceneGraph] = {}
    for i in range(videos):
        p = parts[i]
        ds.videos[p["name"]] = _video_from_part(p["video"])
        graphs[p["name"]] = SceneGraph.model_validate(p["graph"])
        ds.mask_dict.update({int(a): track for a, track in p["masks"].items()})
    ds.validate(check_frames=True)
    save_scene_graphs(root / SCENE_GRAPH_FILE, graphs)
    ds.save()
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    return InterRVOSDataset.load(root)


def generate_splits(out: str | os.PathLike, cfg: SyntheticConfig, sizes: dict[str, int], seed: int = 0, *,
                    workers: int = 1, progress: bool = True) -> dict[str, InterRVOSDataset]:
    """Generate several named splits (e.g. ``{"train": 200, "val": 50}``) as ``out/<name>/``."""
    for name in sizes:
        check_component(name, "split name")
    return {name: generate_split(Path(out) / name, cfg, n, seed, split=name, workers=workers, progress=progress)
            for name, n in sizes.items()}


def split_stats(ds: InterRVOSDataset) -> dict[str, int]:
    """The format's counts plus expressions per generator kind and interactions per kind."""
    out = dict(ds.stats())
    kinds = Counter(str(e.extra.get("kind", "?")) for _, e in ds.iter_expressions())
    for k in sorted(kinds):
        out[f"kind_{k}"] = kinds[k]
    return out
