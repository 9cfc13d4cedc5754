"""Naming conventions: experiments, metric keys MLflow accepts, tag keys, model aliases."""

from __future__ import annotations

import re

EXPERIMENT_PREFIX = "reviosa"
# MLflow allows alphanumerics, underscore, dash, period, space, colon and slash in metric and param names.
_VALID_KEY = re.compile(r"^[A-Za-z0-9_\-. :/]+$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

TAG_DATA_VERSION = "reviosa.data.version"  # data-vN tag the run used ("untracked" if none matches)
TAG_DATA_MD5 = "reviosa.data.md5"  # data.dvc directory hash: exact even between tags
TAG_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own key, so the UI links the commit
TAG_GIT_DIRTY = "reviosa.git.dirty"
TAG_KIND = "reviosa.run.kind"  # eval | train | baseline
TAG_RUN_NOTE = "mlflow.note.content"  # MLflow's own key: the run page shows it as the run's description
TAG_DATA_REPO = "reviosa.data.repo"  # the git + DVC repository holding the version (URL or folder)
TAG_DATA_PATH = "reviosa.data.path"  # the split's path inside that repository
TAG_DATA_NOTE = "reviosa.data.note"  # why a run's data is untracked
TAG_KFP_RUN_ID = "reviosa.kfp.run_id"  # the KFP run (its UUID in the KFP UI) that made a run or version
TAG_KFP_RUN_NAME = "reviosa.kfp.run_name"
TAG_TRAIN_RUN = "reviosa.train.run_id"  # on a model version and its evaluation run: the run that trained it
TAG_EVAL_RUN = "reviosa.eval.run_id"  # on a model version: the run holding its InterRVOS scores
TAG_SCORE_PREFIX = "reviosa.score."  # model version tags: reviosa.score.actor_JF, ...
UNTRACKED = "untracked"

# MLflow 3's UI opens an experiment in the view its kind names (the key and values are the UI's own, see
# mlflow/server/js: "genai_development" is the GenAI traces/evaluations view); ours are model-training experiments.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

CHAMPION = "champion"  # the model version serving traffic
CANDIDATE = "candidate"  # the version waiting for evaluation / promotion
MODEL_ALIASES = (CHAMPION, CANDIDATE)


def experiment_name(kind: str, dataset: str | None = None) -> str:
    """``reviosa/<kind>[/<dataset>]``, e.g. ``reviosa/eval/interrvos-val``; parts are lowercase slugs."""
    parts = [kind] + ([dataset] if dataset else [])
    for part in parts:
        if not _SLUG.match(part):
            raise ValueError(f"experiment name part {part!r} must be a lowercase slug (a-z 0-9 _ . -)")
    return "/".join([EXPERIMENT_PREFIX, *parts])


def metric_key(name: str) -> str:
    """MLflow-safe metric key: ``J&F`` becomes ``JF`` (``actor_J&F`` -> ``actor_JF``); other bad characters raise."""
    key = name.replace("J&F", "JF").replace("&", "_")
    if not key or not _VALID_KEY.match(key):
        raise ValueError(f"metric name {name!r} has characters MLflow rejects; use letters, digits and _ - . : / space")
    return key
