"""The InterRVOS evaluation protocol: per-expression J/F of each role, then the paper's three benchmarks.

Membership (stated again in the printed table's footnote):

* **InterRVOS-Actor** and **InterRVOS-Target**: the expressions that carry a target
  (``Expression.has_target``, i.e. unidirectional interactions). Actor prediction vs actor GT (the union of
  ``anno_id``), target prediction vs target GT (the union of ``target_anno_id``).
* **RVOS**: every expression, actor prediction vs the union of ``anno_id`` (for MeViS-style data exactly the
  MeViS GT). A bidirectional interaction (both objects in ``anno_id``, no target) counts in RVOS only.

Per expression, J and F are means over all its frames; a benchmark's J and F are means over its expressions
(every expression weighs 1), J&F = (J + F) / 2, as the MeViS script computes them. Means are taken in
dataset order, whatever order the worker processes finish in, so the numbers are reproducible to the bit.

Missing predictions are never dropped: a missing role folder (or expression/video folder) scores that role
J = F = 0 and is listed by name; a missing frame PNG inside an existing folder is scored as an empty mask
and listed too. A PNG of the wrong size raises :class:`~reviosa.evaluate.predictions.PredictionError`
naming the file.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reviosa.data.format import META_FILE, DatasetError, Expression, ExpressionType, InterRVOSDataset, Video
from reviosa.evaluate.config import EvalConfig
from reviosa.evaluate.metrics import jf
from reviosa.evaluate.predictions import read_track

#: benchmark key in metric names -> title in the paper's Table 2
BENCHMARKS = {"actor": "InterRVOS-Actor", "target": "InterRVOS-Target", "rvos": "RVOS"}


@dataclass
class ExpressionScore:
    """J and F of one expression's roles (means over its frames); target scores only if it has a target."""

    video: str
    exp_id: str
    text: str
    type: str
    direction: str | None
    has_target: bool
    frames: int
    actor_J: float
    actor_F: float
    target_J: float | None = None
    target_F: float | None = None

    @property
    def actor_JF(self) -> float:
        return (self.actor_J + self.actor_F) / 2

    @property
    def target_JF(self) -> float | None:
        return None if self.target_J is None else (self.target_J + self.target_F) / 2

    def row(self) -> dict[str, Any]:
        """A flat record with the same keys for every expression (the CSV/JSON row)."""
        out = asdict(self)
        for role in ("actor", "target"):
            out[f"{role}_JF"] = getattr(self, f"{role}_JF")
        order = [k for k in out if not k.startswith(("actor_", "target_"))]
        order += [f"{role}_{m}" for role in ("actor", "target") for m in ("J", "F", "JF")]
        return {k: out[k] for k in order}


@dataclass
class MissingPrediction:
    """Prediction files that were not there: a whole role folder, or some frames of one."""

    video: str
    exp_id: str
    role: str
    frames: list[str]
    whole_role: bool

    @property
    def name(self) -> str:
        return f"{self.video}/{self.exp_id}/{self.role}"

    def to_json(self) -> dict[str, Any]:
        """JSON record naming the folder and, for partial tracks, the frames."""
        return {"name": self.name, "video": self.video, "exp_id": self.exp_id, "role": self.role,
                "whole_role": self.whole_role, "frames": self.frames,
                "scored_as": "J = F = 0" if self.whole_role else "empty masks on these frames"}


@dataclass
class BenchmarkScore:
    """J, F, J&F of one benchmark over its expressions (None when it has no expressions)."""

    J: float | None
    F: float | None
    JF: float | None
    expressions: int


@dataclass
class EvaluationResult:
    """Per-expression scores in dataset order, what was missing, and the aggregates derived from them."""

    scores: list[ExpressionScore]
    missing: list[MissingPrediction]
    config: EvalConfig
    data: str = ""
    predictions: str = ""
    benchmarks: dict[str, BenchmarkScore] = field(init=False)

    def __post_init__(self) -> None:
        with_target = [s for s in self.scores if s.has_target]
        self.benchmarks = {
            "actor": _mean_scores([(s.actor_J, s.actor_F) for s in with_target]),
            "target": _mean_scores([(s.target_J, s.target_F) for s in with_target]),
            "rvos": _mean_scores([(s.actor_J, s.actor_F) for s in self.scores]),
        }

    @property
    def summary(self) -> dict[str, float]:
        """MLflow-ready metrics ``actor_J``, ``actor_F``, ``actor_JF``, ``target_*``, ``rvos_*`` in [0, 1].

        A benchmark with no expressions (no interaction with a target in the split) is left out, not NaN.
        """
        out: dict[str, float] = {}
        for key, b in self.benchmarks.items():
            if b.expressions:
                out.update({f"{key}_J": b.J, f"{key}_F": b.F, f"{key}_JF": b.JF})
        return out

    @property
    def counts(self) -> dict[str, int]:
        """Expressions per benchmark and kind, and how many predictions were missing."""
        return {
            "expressions": len(self.scores),
            "with_target": sum(s.has_target for s in self.scores),
            "bidirectional": sum(s.direction == "bidirectional" for s in self.scores),
            "missing_roles": sum(m.whole_role for m in self.missing),
            "missing_frames": sum(len(m.frames) for m in self.missing if not m.whole_role),
        }

    def by_type(self) -> dict[str, dict[str, Any]]:
        """Actor (RVOS-style) means per expression type; interaction also gets target means over its targets."""
        out: dict[str, dict[str, Any]] = {}
        for kind in ExpressionType:
            group = [s for s in self.scores if s.type == kind.value]
            entry: dict[str, Any] = {"expressions": len(group)}
            actor = _mean_scores([(s.actor_J, s.actor_F) for s in group])
            entry.update({"actor_J": actor.J, "actor_F": actor.F, "actor_JF": actor.JF})
            targets = [s for s in group if s.has_target]
            if targets:
                tgt = _mean_scores([(s.target_J, s.target_F) for s in targets])
                entry.update({"with_target": len(targets), "target_J": tgt.J, "target_F": tgt.F,
                              "target_JF": tgt.JF})
            out[kind.value] = entry
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything: summary, benchmarks, per-type breakdown, missing list, per-expression rows, settings."""
        return {
            "data": self.data,
            "predictions": self.predictions,
            "summary": self.summary,
            "benchmarks": {BENCHMARKS[k]: asdict(b) for k, b in self.benchmarks.items()},
            "counts": self.counts,
            "by_type": self.by_type(),
            "protocol": protocol_note(self),
            "missing": [m.to_json() for m in self.missing],
            "per_expression": [s.row() for s in self.scores],
            "config": self.config.model_dump(),
        }


def protocol_note(result: EvaluationResult) -> str:
    """The membership rules with this split's counts (the printed table's footnote)."""
    c = result.counts
    return (f"InterRVOS-Actor/-Target: the {c['with_target']} expressions with a target (unidirectional "
            f"interactions); actor vs actor GT, target vs target GT. RVOS: all {c['expressions']} expressions, "
            f"actor prediction vs the union of anno_id (the MeViS GT); bidirectional interactions "
            f"({c['bidirectional']}) count in RVOS only. J, F: mean over frames per expression, then over "
            f"expressions; J&F = (J + F) / 2.")


def _mean_scores(pairs: list[tuple[float, float]]) -> BenchmarkScore:
    if not pairs:
        return BenchmarkScore(None, None, None, 0)
    arr = np.asarray(pairs, dtype=np.float64)  # dataset order: the sum is the same on every run
    j, f = float(arr[:, 0].mean()), float(arr[:, 1].mean())
    return BenchmarkScore(j, f, (j + f) / 2, len(pairs))


# ---------------------------------------------------------------------- scoring
def score_video(ds: InterRVOSDataset, video: Video, pred_dir: str | os.PathLike,
                bound_th: float = 0.008) -> tuple[list[ExpressionScore], list[MissingPrediction]]:
    """Score every expression of one video against the predictions in ``pred_dir``."""
    if not video.frames:
        raise DatasetError(ds.root / META_FILE, "video has no frames to score", video=video.name, field="frames")
    size = ds.frame_size(video)
    tracks: dict[int, np.ndarray] = {}

    def gt(anno_ids: list[int]) -> np.ndarray:
        # Expressions of a video share objects: decode each object's RLE track once.
        out = np.zeros((video.num_frames, *size), dtype=bool)
        for a in anno_ids:
            if a not in tracks:
                tracks[a] = ds.union_masks(video, [a])
            out |= tracks[a]
        return out

    scores, missing = [], []
    for exp in video.expressions.values():
        aj, af = _score_role(pred_dir, video, exp, "actor", gt(exp.anno_ids), size, bound_th, missing)
        tj = tf = None
        if exp.has_target:
            tj, tf = _score_role(pred_dir, video, exp, "target", gt(exp.target_anno_ids), size, bound_th, missing)
        scores.append(ExpressionScore(video.name, exp.exp_id, exp.text, exp.type.value,
                                      exp.direction.value if exp.direction else None, exp.has_target,
                                      video.num_frames, aj, af, tj, tf))
    return scores, missing


def _score_role(pred_dir: str | os.PathLike, video: Video, exp: Expression, role: str, gt: np.ndarray,
                size: tuple[int, int], bound_th: float, missing: list[MissingPrediction]) -> tuple[float, float]:
    pred, absent = read_track(pred_dir, video.name, exp.exp_id, role, video.frames, size)
    if pred is None:
        missing.append(MissingPrediction(video.name, exp.exp_id, role, absent, whole_role=True))
        return 0.0, 0.0
    if absent:
        missing.append(MissingPrediction(video.name, exp.exp_id, role, absent, whole_role=False))
    j, f = jf(gt, pred, bound_th)
    return float(j.mean()), float(f.mean())


# Worker processes find the split here: inherited from the parent under fork, loaded once under spawn.
_DATASETS: dict[str, InterRVOSDataset] = {}


def _score_job(job: tuple[str, str, str, float]) -> tuple[list[ExpressionScore], list[MissingPrediction]]:
    root, pred_dir, vid, bound_th = job
    if root not in _DATASETS:
        _DATASETS[root] = InterRVOSDataset.load(root, check_frames=False)
    ds = _DATASETS[root]
    return score_video(ds, ds.videos[vid], pred_dir, bound_th)


def evaluate_split(dataset: InterRVOSDataset | str | os.PathLike, pred_dir: str | os.PathLike,
                   cfg: EvalConfig | None = None) -> EvaluationResult:
    """Score a prediction folder against a split; returns per-expression scores and the three benchmarks."""
    cfg = cfg or EvalConfig()
    ds = dataset if isinstance(dataset, InterRVOSDataset) else InterRVOSDataset.load(dataset)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    for video in ds.videos.values():  # checked here: errors raised in workers should be about predictions only
        if not video.frames:
            raise DatasetError(ds.root / META_FILE, "video has no frames to score", video=video.name,
                               field="frames")
    key = str(Path(ds.root).resolve())
    _DATASETS[key] = ds
    jobs = [(key, str(pred_dir), vid, cfg.bound_th) for vid in ds.videos]
    n_exp = sum(len(v.expressions) for v in ds.videos.values())
    workers = min(cfg.workers or os.cpu_count() or 1, len(jobs))
    bar = tqdm(total=n_exp, desc="evaluate", unit="expr", disable=not cfg.progress or None)
    parts = []
    try:
        if workers <= 1:
            for job in jobs:
                parts.append(_score_job(job))
                bar.update(len(parts[-1][0]))
        else:
            ctx = multiprocessing.get_context(cfg.start_method)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for part in pool.map(_score_job, jobs):  # results come back in job order
                    parts.append(part)
                    bar.update(len(part[0]))
    finally:
        bar.close()
        _DATASETS.pop(key, None)
    scores = [s for part, _ in parts for s in part]
    missing = [m for _, part in parts for m in part]
    return EvaluationResult(scores, missing, cfg, data=str(ds.root), predictions=str(pred_dir))
