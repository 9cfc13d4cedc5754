"""``reviosa annotate run``: stages 0-4 over a split, resumable per video, then a new split and a report.

Layout of the output folder::

    meta_expressions.json, mask_dict.json, JPEGImages/   the annotated split (same frames and masks)
    annotations/<video>.json                             every stage's answers and failures, per video
    tracks/<video>.json                                  stage 0: SAM2 tracks of prompted objects, per video
    annotate_report.json                                 counts per expression type, failures, calls, tokens
    .cache/answers/                                      content-addressed model answers (unless --cache-dir)

A video's record is written atomically when all its stages are done; a rerun skips finished videos and
answers the requests of unfinished ones from the cache, so a killed run loses nothing and pays nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from reviosa.annotate.answering import Answerer, dumps
from reviosa.annotate.backends import Backend, OpenAIBackend
from reviosa.annotate.cache import AnswerCache
from reviosa.annotate.config import STAGES, AnnotateConfig
from reviosa.annotate.prompts_file import PROMPTS_FILE, load_prompts
from reviosa.annotate.stages import VideoJob, annotate_video
from reviosa.annotate.track_check import check_tracks
from reviosa.data.atomic import atomic_write_text
from reviosa.data.format import (
    FRAMES_DIR,
    SCENE_GRAPH_FILE,
    DatasetError,
    Direction,
    Expression,
    ExpressionType,
    InterRVOSDataset,
    Video,
)
from reviosa.data.names import inside, relative_inside

RECORDS_DIR = "annotations"
REPORT_FILE = "annotate_report.json"


def record_path(out: Path, video: str) -> Path:
    """Where one video's stage outputs live (the video name must stay inside ``out``)."""
    return inside(out, RECORDS_DIR, f"{video}.json", what="video name")


def run_annotation(src: str | os.PathLike, out: str | os.PathLike, cfg: AnnotateConfig, *,
                   cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Annotate every video of ``src`` into the split ``out``; returns the report (also written to ``out``)."""
    src, out = Path(src), Path(out)
    if src.resolve() == out.resolve():
        raise ValueError("the output folder must differ from the input split")
    ds = InterRVOSDataset.load(src)
    track_counts = _track_prompted(ds, src, out, cfg, progress)
    check_tracks(ds)
    backends = _backends(cfg, ds)
    cache = AnswerCache(cache_dir if cache_dir is not None else out / ".cache" / "answers")
    model_stages = {s for s in STAGES if cfg.backend_for(s) != "offline"}
    records, resumed = asyncio.run(_annotate_all(ds, out, cfg, backends, cache, model_stages, progress))
    result = InterRVOSDataset(out, {v.name: _annotated_video(v, records[v.name]) for v in ds.videos.values()},
                              {o.anno_id: ds.mask_dict[o.anno_id] for v in ds.videos.values()
                               for o in v.objects.values()})
    if (src / SCENE_GRAPH_FILE).exists():
        shutil.copyfile(src / SCENE_GRAPH_FILE, out / SCENE_GRAPH_FILE)
    result.save()
    report = build_report(result, records, resumed[1])
    report["tracks"] = track_counts
    report["calls"] = resumed[0]
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=1))
    return report


def _track_prompted(ds: InterRVOSDataset, src: Path, out: Path, cfg: AnnotateConfig, progress: bool
                    ) -> dict[str, int]:
    """Stage 0: SAM2 tracks for objects with a prompt but no given track, merged into ``ds.mask_dict``."""
    given = sum(1 for v in ds.videos.values() for o in v.objects.values() if o.anno_id in ds.mask_dict)
    path = Path(cfg.mask_tracks.prompts) if cfg.mask_tracks.prompts else src / PROMPTS_FILE
    if cfg.mask_tracks.prompts is None and not path.exists():
        return {"objects_given": given, "objects_tracked": 0, "videos_tracked": 0, "videos_tracked_resumed": 0}
    from reviosa.annotate.mask_tracks import TRACKS_DIR, track_split

    tracks, counts = track_split(ds, load_prompts(path), cfg.mask_tracks, out / TRACKS_DIR, progress=progress)
    ds.mask_dict.update(tracks)
    return counts


def _backends(cfg: AnnotateConfig, ds: InterRVOSDataset) -> dict[int, Backend]:
    made: dict[str, Backend] = {}
    for stage in STAGES:
        name = cfg.backend_for(stage)
        if name not in made:
            made[name] = _offline_backend(ds) if name == "offline" else OpenAIBackend(cfg)
    return {stage: made[cfg.backend_for(stage)] for stage in STAGES}


def _offline_backend(ds: InterRVOSDataset) -> Backend:
    from reviosa.annotate.offline import OfflineBackend
    from reviosa.data.scene_graph import load_scene_graphs

    path = ds.root / SCENE_GRAPH_FILE
    if not path.exists():
        raise DatasetError(path, "the offline backend answers from the scene graph, but the split has none")
    graphs = load_scene_graphs(path)
    missing = [v for v in ds.videos if v not in graphs]
    if missing:
        raise DatasetError(path, f"no scene graph for {len(missing)} video(s)", video=missing[0])
    return OfflineBackend(graphs)


async def _annotate_all(ds: InterRVOSDataset, out: Path, cfg: AnnotateConfig, backends: dict[int, Backend],
                        cache: AnswerCache, model_stages: set[int], progress: bool
                        ) -> tuple[dict[str, dict[str, Any]], tuple[dict[str, Any], int]]:
    from tqdm import tqdm

    answerer = Answerer(cfg, backends, cache, model_stages)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for name in ds.videos:
        rec = _finished_record(out, name)
        if rec is None:
            todo.append(name)
        else:
            records[name] = rec
    resumed = len(records)
    videos_in_flight = asyncio.Semaphore(max(2, cfg.concurrency))

    async def one(name: str) -> None:
        async with videos_in_flight:
            video = ds.videos[name]
            _copy_frames(ds, video, out)
            rec = await annotate_video(answerer, VideoJob(ds, video, cfg))
            rec["failures"] = sorted(rec["failures"], key=lambda f: json.dumps(f, sort_keys=True))
            atomic_write_text(record_path(out, name), dumps(rec))
            records[name] = rec

    try:
        with tqdm(total=len(ds.videos), initial=resumed, desc="annotate", unit="video", disable=not progress) as bar:
            for fut in asyncio.as_completed([one(n) for n in todo]):
                await fut
                bar.update(1)
    finally:
        await answerer.aclose()
    return records, (answerer.stats.to_json(), resumed)


def _finished_record(out: Path, name: str) -> dict[str, Any] | None:
    """The stored record of a finished video; records with transport failures are redone on a rerun."""
    try:
        rec = json.loads(record_path(out, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(f.get("kind") == "transport" for f in rec.get("failures", [])):
        return None
    return rec


def _copy_frames(ds: InterRVOSDataset, video: Video, out: Path) -> None:
    # The files the readers open (any FRAME_SUFFIXES spelling), both ends resolved inside their split.
    if video.video_file:
        pairs = [(ds.video_path(video), relative_inside(out, video.video_file, "video_file"))]
    else:
        sources = [ds.frame_path(video, f) for f in video.frames]
        pairs = [(src, inside(out, FRAMES_DIR, video.name, src.name, what="frame file")) for src in sources]
    for src, dst in pairs:
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        try:
            os.link(src, tmp)
        except OSError:  # another file system: copy instead of hard-linking
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _annotated_video(video: Video, rec: dict[str, Any]) -> Video:
    """The input video (frames, objects, size) with the expressions built from its record."""
    return Video(video.name, list(video.frames), build_expressions(video, rec), dict(video.objects), video.height,
                 video.width, video.video_file)


def build_expressions(video: Video, rec: dict[str, Any]) -> dict[str, Expression]:
    """Expressions in a fixed order: per object (appearance, motion, combined), groups, then interactions."""
    anno = {o: info.anno_id for o, info in video.objects.items()}
    out: dict[str, Expression] = {}
    seen: set[tuple] = set()

    def add(text: str, objs: list[int], kind: ExpressionType, direction: Direction | None = None,
            targets: tuple[int, ...] = (), **extra: str) -> None:
        key = (text.lower(), tuple(objs), targets)
        if key in seen:
            return
        seen.add(key)
        eid = str(len(out))
        out[eid] = Expression(eid, text, list(objs), [anno[o] for o in objs], kind, direction, list(targets),
                              [anno[o] for o in targets], dict(extra))

    for key, obj in sorted(rec["objects"].items(), key=lambda kv: int(kv[0])):
        for subtype in ("appearance", "motion", "combined"):
            for text in (obj["expressions"] or {}).get(subtype, []):
                add(text, [int(key)], ExpressionType.SINGLE, subtype=subtype)
    for g in rec["groups"]:
        add(g["expression"], sorted(g["objects"]), ExpressionType.MULTI, subtype="motion")
    for it in rec["interactions"]:
        e = it["expressions"]
        if e is None:
            continue
        if it["direction"] == "unidirectional":
            a, t = it["actor"], it["target"]
            add(e["class_level"], [a], ExpressionType.INTERACTION, Direction.UNIDIRECTIONAL, (t,), level="class",
                voice="active")
            add(e["appearance_level"], [a], ExpressionType.INTERACTION, Direction.UNIDIRECTIONAL, (t,),
                level="appearance", voice="active")
            add(e["swapped_class_level"], [t], ExpressionType.INTERACTION, Direction.UNIDIRECTIONAL, (a,),
                level="class", voice="passive")
            add(e["swapped_appearance_level"], [t], ExpressionType.INTERACTION, Direction.UNIDIRECTIONAL, (a,),
                level="appearance", voice="passive")
        else:
            pair = sorted([it["actor"], it["target"]])
            add(e["class_level"], pair, ExpressionType.INTERACTION, Direction.BIDIRECTIONAL, level="class")
            add(e["appearance_level"], pair, ExpressionType.INTERACTION, Direction.BIDIRECTIONAL, level="appearance")
    return out


def build_report(ds: InterRVOSDataset, records: dict[str, dict[str, Any]], resumed: int) -> dict[str, Any]:
    """Counts per expression type and subtype, failures per stage and kind."""
    kinds: Counter = Counter()
    for _, e in ds.iter_expressions():
        kinds[e.type.value] += 1
        kinds[f"{e.type.value}/{e.extra.get('subtype') or e.extra.get('level')}"] += 1
        if e.direction is not None:
            kinds[f"{e.type.value}/{e.direction.value}"] += 1
    failures = [f for r in records.values() for f in r["failures"]]
    return {
        "videos": len(ds.videos), "videos_resumed": resumed,
        "expressions": sum(len(v.expressions) for v in ds.videos.values()),
        "expressions_per_type": dict(sorted(kinds.items())),
        "interactions_found": sum(len(r["interactions"]) for r in records.values()),
        "failures": len(failures),
        "failures_per_stage": dict(sorted(Counter(f"stage{f['stage']}/{f['kind']}" for f in failures).items())),
    }
