"""In-training validation with the InterRVOS protocol (Actor / Target / RVOS J, F, J&F) and overlay videos.

Membership follows the evaluation protocol: Actor and Target over the expressions with a target, RVOS over
every expression (actor prediction vs the union of ``anno_id``). A missing target prediction scores 0.
Predictions stay in memory; nothing is written but the overlays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from reviosa.data.format import InterRVOSDataset
from reviosa.data.names import inside
from reviosa.evaluate.metrics import jf
from reviosa.model.tokenizer import answer_text


def _mean(pairs: list[tuple[float, float]], key: str) -> dict[str, float]:
    if not pairs:
        return {}
    j = float(np.mean([p[0] for p in pairs]))
    f = float(np.mean([p[1] for p in pairs]))
    return {f"{key}_J": j, f"{key}_F": f, f"{key}_JF": (j + f) / 2}


def summarize(rows: list[dict]) -> dict[str, float]:
    """MLflow-safe ``actor_J``/``_F``/``_JF``, ``target_*``, ``rvos_*`` (and the mean ``role_iou``) from rows."""
    inter = [r for r in rows if r["has_target"]]
    out = _mean([(r["actor_J"], r["actor_F"]) for r in inter], "actor")
    out.update(_mean([(r["target_J"], r["target_F"]) for r in inter], "target"))
    out.update(_mean([(r["actor_J"], r["actor_F"]) for r in rows], "rvos"))
    overlap = [r["role_iou"] for r in inter if "role_iou" in r]
    if overlap:
        out["role_iou"] = float(np.mean(overlap))
    return out


def score_expression(video_name: str, exp, gt_act: np.ndarray, gt_tar: np.ndarray | None, actor: np.ndarray,
                     target: np.ndarray | None, bound_th: float = 0.008) -> dict:
    """One per-expression row: J and F means over frames per role (a missing target prediction scores 0)."""
    aj, af = jf(gt_act, actor, bound_th)
    row = {"video": video_name, "exp_id": exp.exp_id, "has_target": exp.has_target,
           "actor_J": float(aj.mean()), "actor_F": float(af.mean())}
    if exp.has_target:
        if target is None:
            row["target_J"] = row["target_F"] = 0.0
        else:
            tj, tf = jf(gt_tar, target, bound_th)
            row["target_J"], row["target_F"] = float(tj.mean()), float(tf.mean())
            # Actor and target are different objects: an overlap near 1 means the prompt's role is being ignored.
            union = np.logical_or(actor, target).sum()
            row["role_iou"] = float(np.logical_and(actor, target).sum() / union) if union else 1.0
    return row


def validate(model, dataset: InterRVOSDataset, max_videos: int, *, overlays: int = 0,
             overlay_dir: str | Path | None = None, teacher_forced: bool = False,
             progress: bool = True) -> tuple[dict[str, float], list[dict], list[Path]]:
    """(summary, per-expression rows, overlay files) of the model on the first ``max_videos`` videos."""
    from reviosa.model.inference import predict_video
    from reviosa.visualize.overlay import overlay_frames, write_overlay

    rows, written = [], []
    videos = list(dataset.videos.values())[:max_videos]
    total = sum(len(v.expressions) for v in videos)
    with tqdm(total=total, desc="validate", unit="expr", disable=not progress or None, leave=False) as bar:
        for vi, video in enumerate(videos):
            frames = dataset.read_frames(video)
            # One overlay per video, of an interaction expression when there is one (both roles visible).
            shown = next((e for e in video.expressions.values() if e.has_target), None) or \
                next(iter(video.expressions.values()), None)
            for exp in video.expressions.values():
                answer = answer_text(model.config, exp.has_target) if teacher_forced else None
                pred = predict_video(model, frames, exp.text, answer=answer)
                gt_tar = dataset.union_masks(video, exp.target_anno_ids) if exp.has_target else None
                rows.append(score_expression(video.name, exp, dataset.union_masks(video, exp.anno_ids), gt_tar,
                                             pred.actor, pred.target))
                if overlay_dir is not None and vi < overlays and exp is shown:
                    path = inside(overlay_dir, f"{video.name}_{exp.exp_id}.gif", what="overlay name")
                    # A teacher-forced reply is the ground-truth answer, not the model's: the legend says so.
                    pictures = overlay_frames(frames, pred.actor, pred.target, expression=exp.text,
                                              answer=pred.text, frame_names=video.frames,
                                              answer_label="answer (teacher-forced)" if teacher_forced else "answer")
                    written.append(write_overlay(path, pictures))
                bar.update(1)
    return summarize(rows), rows, written
