"""Reference predictors that give the evaluator real numbers to score without a trained model.

* ``oracle``: copies the ground truth (J&F = 1 by construction; checks the evaluation plumbing).
* ``empty``: predicts nothing (scores only frames where the object is absent).
* ``largest-moving``: ignores the expression; the actor is the largest moving foreground blob per frame and
  the target the second largest. Foreground is what differs from the per-pixel temporal median background.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from reviosa.data.format import Expression, InterRVOSDataset, Video
from reviosa.evaluate.official import results_entry, write_results
from reviosa.evaluate.predictions import write_track

FORMATS = ("png", "official")

Prediction = tuple[np.ndarray, np.ndarray | None]  # actor (T,H,W), target (T,H,W) or None


@dataclass(frozen=True)
class MovingConfig:
    """Thresholds of the largest-moving-object heuristic (uint8 colour units, pixel fractions)."""

    foreground_threshold: float = 30.0
    motion_threshold: float = 30.0
    min_moving_fraction: float = 0.05
    min_area: int = 4


def predict_oracle(ds: InterRVOSDataset, video: Video, exps: list[Expression]) -> Iterator[Prediction]:
    """Ground truth of each expression."""
    for e in exps:
        yield ds.union_masks(video, e.anno_ids), (ds.union_masks(video, e.target_anno_ids) if e.has_target else None)


def predict_empty(ds: InterRVOSDataset, video: Video, exps: list[Expression]) -> Iterator[Prediction]:
    """All-background masks."""
    h, w = ds.frame_size(video)
    empty = np.zeros((video.num_frames, h, w), dtype=bool)
    for e in exps:
        yield empty, (empty if e.has_target else None)


def moving_blobs(frames: np.ndarray, cfg: MovingConfig = MovingConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest moving foreground blob per frame of (T, H, W, 3) uint8 frames."""
    f = frames.astype(np.int16)
    background = np.median(f, axis=0)
    foreground = np.abs(f - background).max(axis=-1) > cfg.foreground_threshold
    step = np.abs(np.diff(f, axis=0)).max(axis=-1) > cfg.motion_threshold  # (T-1, H, W)
    motion = np.zeros(foreground.shape, dtype=bool)
    if len(step):
        motion[:-1] |= step
        motion[1:] |= step
    first = np.zeros(foreground.shape, dtype=bool)
    second = np.zeros(foreground.shape, dtype=bool)
    for t in range(len(frames)):
        labels, n = ndimage.label(foreground[t])
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = ndimage.sum_labels(np.ones_like(labels), labels, idx)
        moving = ndimage.sum_labels(motion[t], labels, idx)
        ok = (area >= cfg.min_area) & (moving >= cfg.min_moving_fraction * area)
        ranked = idx[ok][np.argsort(-area[ok], kind="stable")]
        if len(ranked) > 0:
            first[t] = labels == ranked[0]
        if len(ranked) > 1:
            second[t] = labels == ranked[1]
    return first, second


def predict_largest_moving(ds: InterRVOSDataset, video: Video, exps: list[Expression]) -> Iterator[Prediction]:
    """Expression-agnostic: actor = largest moving blob, target = second largest."""
    first, second = moving_blobs(ds.read_frames(video))
    for e in exps:
        yield first, (second if e.has_target else None)


PREDICTORS: dict[str, Callable[[InterRVOSDataset, Video, list[Expression]], Iterator[Prediction]]] = {
    "oracle": predict_oracle,
    "empty": predict_empty,
    "largest-moving": predict_largest_moving,
}


def _predict_video(args: tuple[str, str, str, str, str]) -> tuple[int, list[dict]]:
    """Predict one video: PNGs are written here; official entries go back to the parent, which writes one file."""
    name, root, vid, out, fmt = args
    ds = _dataset(root)
    video = ds.videos[vid]
    exps = list(video.expressions.values())
    entries = []
    for e, (actor, target) in zip(exps, PREDICTORS[name](ds, video, exps)):
        if fmt == "official":
            entries.append(results_entry(0, vid, e.exp_id, e.text, video.frames, actor, target))
            continue
        write_track(out, vid, e.exp_id, "actor", video.frames, actor)
        if target is not None:
            write_track(out, vid, e.exp_id, "target", video.frames, target)
    return len(exps), entries


_CACHE: dict[str, InterRVOSDataset] = {}


def _dataset(root: str) -> InterRVOSDataset:
    # Each worker loads the split once, not once per video.
    if root not in _CACHE:
        _CACHE[root] = InterRVOSDataset.load(root, check_frames=False)
    return _CACHE[root]


def run_baseline(name: str, data: str | os.PathLike, out: str | os.PathLike, *, workers: int | None = None,
                 fmt: str = "png") -> int:
    """Write predictions of baseline ``name`` for every expression of a split; returns the expression count.

    ``fmt``: ``png`` (the prediction folder) or ``official`` (one ``results.json`` in ``out``, or ``out`` itself
    when it names a .json file).
    """
    if name not in PREDICTORS:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(PREDICTORS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown prediction format {fmt!r}; choose one of {FORMATS}")
    ds = InterRVOSDataset.load(data)
    root = str(Path(data).resolve())
    # The split just validated, not one cached by an earlier run on the same folder (it may have changed since);
    # forked workers inherit it, spawned ones load it themselves.
    _CACHE[root] = ds
    jobs = [(name, root, vid, str(out), fmt) for vid in ds.videos]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc=f"baseline {name}", unit="video", disable=None)
    done, entries = 0, []
    try:
        if workers == 1 or len(jobs) < 2:
            results = map(_predict_video, jobs)
            for n, part in results:
                done += n
                entries += part
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                for n, part in pool.map(_predict_video, jobs, chunksize=4):
                    done += n
                    entries += part
                    bar.update()
    finally:
        bar.close()
        _CACHE.pop(root, None)
    if fmt == "official":
        for i, e in enumerate(entries):  # official inference numbers expressions in dataset order
            e["index"] = i
        write_results(out, entries)
    return done
