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

Official val folders (a ``new_meta_expressions.json`` beside the split, :attr:`InterRVOSDataset.role_split`) are
scored by the official rules (``tools/eval/eval_interrvos.py``, ``eval_interrvos_target.py``): Actor over every
expression of ``new_meta_expressions.json`` with GT = the union of its top-level ``anno_id``, Target over those
with GT = the union of ``subject/object.anno_id.object``, both from ``new_mask_dict.json``; RVOS over every
expression of ``meta_expressions.json`` as above.

Missing predictions are never dropped: a missing role folder (or expression/video folder, or results.json
entry) scores that role J = F = 0 and is listed by name; a missing frame PNG inside an existing folder (or a
null RLE) is scored as an empty mask and listed too. The official scripts instead skip such expressions (a
missing video explicitly, anything else by a crashing worker); :meth:`EvaluationResult.official_rules` gives
the numbers they would print. A mask of the wrong size raises
:class:`~reviosa.evaluate.predictions.PredictionError` naming the file.
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

from reviosa.data.format import DatasetError, Expression, ExpressionType, InterRVOSDataset, Video
from reviosa.evaluate.config import EvalConfig
from reviosa.evaluate.metrics import jf
from reviosa.evaluate.official import OfficialPredictions, open_predictions
from reviosa.evaluate.predictions import PngPredictions

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
    #: official val folders: the new_meta_expressions.json rows the Actor and Target benchmarks are taken over
    role_scores: list[ExpressionScore] | None = None
    benchmarks: dict[str, BenchmarkScore] = field(init=False)

    def __post_init__(self) -> None:
        self.benchmarks = {k: _mean_scores([(s.J, s.F) for s in rows]) for k, rows in self.members().items()}

    def members(self) -> dict[str, list[BenchmarkRow]]:
        """Per benchmark, the rows it averages (with the J and F of the role it scores), in dataset order."""
        rows = self.scores if self.role_scores is None else self.role_scores
        # The official Actor score takes every new_* expression; reviosa's own only those with a target.
        actor = rows if self.role_scores is not None else [s for s in rows if s.has_target]
        return {"actor": [BenchmarkRow(s, "actor", s.actor_J, s.actor_F) for s in actor],
                "target": [BenchmarkRow(s, "target", s.target_J, s.target_F) for s in rows if s.has_target],
                "rvos": [BenchmarkRow(s, "actor", s.actor_J, s.actor_F) for s in self.scores]}

    def official_rules(self) -> dict[str, Any]:
        """The numbers the official scripts would print: rows with a missing prediction skipped, x100, 2 decimals."""
        absent = {(m.video, m.exp_id, m.role) for m in self.missing}
        out: dict[str, Any] = {"skipped": {}}
        for key, rows in self.members().items():
            kept = [r for r in rows if (r.score.video, r.score.exp_id, r.role) not in absent]
            b = _mean_scores([(r.J, r.F) for r in kept])
            out[BENCHMARKS[key]] = {"expressions": b.expressions, **({} if b.J is None else {
                "J": round(100 * b.J, 2), "F": round(100 * b.F, 2), "J&F": round(100 * ((b.J + b.F) / 2), 2)})}
            out["skipped"][BENCHMARKS[key]] = len(rows) - len(kept)
        return out

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
        out = {
            "expressions": len(self.scores),
            "with_target": sum(s.has_target for s in self.scores),
            "bidirectional": sum(s.direction == "bidirectional" for s in self.scores),
            "missing_roles": sum(m.whole_role for m in self.missing),
            "missing_frames": sum(len(m.frames) for m in self.missing if not m.whole_role),
        }
        if self.role_scores is not None:
            out["role_expressions"] = len(self.role_scores)
            out["role_with_target"] = sum(s.has_target for s in self.role_scores)
        return out

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
            "official_rules": {**self.official_rules(), "note": official_note(self)},
            "per_expression": [s.row() for s in self.scores],
            **({} if self.role_scores is None else {"per_expression_roles": [s.row() for s in self.role_scores]}),
            "config": self.config.model_dump(),
        }


@dataclass
class BenchmarkRow:
    """One expression's J and F in one benchmark (``role`` says which prediction was scored)."""

    score: ExpressionScore
    role: str
    J: float
    F: float


def official_note(result: EvaluationResult) -> str:
    """Where reviosa's numbers and the official scripts' can differ on this result (empty when they cannot)."""
    rules = result.official_rules()
    skipped = sum(rules["skipped"].values())
    if not skipped:
        return ""
    parts = ", ".join(f"{k} J&F {rules[k].get('J&F', '-')} over {rules[k]['expressions']}" for k in BENCHMARKS.values())
    return (f"reviosa scores the {skipped} benchmark row(s) with a missing prediction as 0 (all named under "
            f"'missing'); the official scripts skip them (eval_interrvos*.py skips a missing video; any other gap "
            f"crashes their worker and drops the expression), which would give {parts}.")


def protocol_note(result: EvaluationResult) -> str:
    """The membership rules with this split's counts (the printed table's footnote)."""
    c = result.counts
    if result.role_scores is not None:
        return (f"Official rules: InterRVOS-Actor over the {c['role_expressions']} expressions of "
                f"new_meta_expressions.json, actor prediction vs the union of their top-level anno_id; "
                f"InterRVOS-Target over the {c['role_with_target']} of them whose subject/object names an object, "
                f"target prediction vs its union (GT from new_mask_dict.json). RVOS: all {c['expressions']} "
                f"expressions of meta_expressions.json, actor prediction vs the union of anno_id. J, F: mean over "
                f"frames per expression, then over expressions; J&F = (J + F) / 2.")
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
Predictions = PngPredictions | OfficialPredictions


def score_video(ds: InterRVOSDataset, video: Video, pred_dir: str | os.PathLike | Predictions,
                bound_th: float = 0.008, *, official_roles: bool = False
                ) -> tuple[list[ExpressionScore], list[MissingPrediction]]:
    """Score every expression of one video against predictions (a PNG folder, or an opened source).

    ``official_roles``: score by the official Actor/Target rules (``ds`` is a new_* pair): the target of every
    expression whose ``subject/object`` names an object, whatever its ``caption_type``.
    """
    preds = PngPredictions(pred_dir) if isinstance(pred_dir, (str, os.PathLike)) else pred_dir
    if not video.frames:
        raise DatasetError(ds.root / ds.meta_file, "video has no frames to score", video=video.name, field="frames")
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
        target_ids = exp.object_anno_ids if official_roles else exp.target_anno_ids
        aj, af = _score_role(preds, video, exp, "actor", gt(exp.anno_ids), size, bound_th, missing)
        tj = tf = None
        if target_ids:
            tj, tf = _score_role(preds, video, exp, "target", gt(target_ids), size, bound_th, missing)
        scores.append(ExpressionScore(video.name, exp.exp_id, exp.text, exp.type.value,
                                      exp.direction.value if exp.direction else None, bool(target_ids),
                                      video.num_frames, aj, af, tj, tf))
    return scores, missing


def _score_role(preds: Predictions, video: Video, exp: Expression, role: str, gt: np.ndarray,
                size: tuple[int, int], bound_th: float, missing: list[MissingPrediction]) -> tuple[float, float]:
    pred, absent = preds.read_track(video.name, exp.exp_id, role, video.frames, size)
    if pred is None:
        missing.append(MissingPrediction(video.name, exp.exp_id, role, absent, whole_role=True))
        return 0.0, 0.0
    if absent:
        missing.append(MissingPrediction(video.name, exp.exp_id, role, absent, whole_role=False))
    j, f = jf(gt, pred, bound_th)
    return float(j.mean()), float(f.mean())


# Worker processes find the split and the predictions here: inherited from the parent under fork, loaded once
# under spawn (a results.json is parsed once per worker, not once per video).
_DATASETS: dict[str, InterRVOSDataset] = {}
_PREDICTIONS: dict[str, Predictions] = {}

Part = tuple[list[ExpressionScore], list[ExpressionScore], list[MissingPrediction]]


def _score_job(job: tuple[str, str, str, float]) -> Part:
    root, pred_path, vid, bound_th = job
    if root not in _DATASETS:
        _DATASETS[root] = InterRVOSDataset.load(root, check_frames=False)
    if pred_path not in _PREDICTIONS:
        _PREDICTIONS[pred_path] = open_predictions(pred_path)
    ds, preds = _DATASETS[root], _PREDICTIONS[pred_path]
    scores, missing = score_video(ds, ds.videos[vid], preds, bound_th)
    roles: list[ExpressionScore] = []
    if ds.role_split is not None and vid in ds.role_split.videos:
        roles, more = score_video(ds.role_split, ds.role_split.videos[vid], preds, bound_th, official_roles=True)
        missing += more
    return scores, roles, missing


def evaluate_split(dataset: InterRVOSDataset | str | os.PathLike, pred_dir: str | os.PathLike,
                   cfg: EvalConfig | None = None) -> EvaluationResult:
    """Score predictions (a PNG folder, an official results.json, or a folder of results_pid_<k>.json) against a
    split; returns per-expression scores and the three benchmarks."""
    cfg = cfg or EvalConfig()
    ds = dataset if isinstance(dataset, InterRVOSDataset) else InterRVOSDataset.load(dataset)
    preds = open_predictions(pred_dir)
    for part in [ds] + ([ds.role_split] if ds.role_split is not None else []):
        for video in part.videos.values():  # checked here: errors raised in workers should be about predictions
            if not video.frames:
                raise DatasetError(part.root / part.meta_file, "video has no frames to score", video=video.name,
                                   field="frames")
    key, pred_key = str(Path(ds.root).resolve()), str(Path(pred_dir).resolve())
    _DATASETS[key], _PREDICTIONS[pred_key] = ds, preds
    jobs = [(key, pred_key, vid, cfg.bound_th) for vid in ds.videos]
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
        _PREDICTIONS.pop(pred_key, None)
    scores = [s for part, _, _ in parts for s in part]
    roles = [s for _, part, _ in parts for s in part] if ds.role_split is not None else None
    # Main and new_* rows of one expression read the same prediction: name each gap once.
    seen, missing = set(), []
    for m in (m for _, _, part in parts for m in part):
        if m.name not in seen:
            seen.add(m.name)
            missing.append(m)
    return EvaluationResult(scores, missing, cfg, data=str(ds.root), predictions=preds.description, role_scores=roles)
