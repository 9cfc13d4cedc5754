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
