"""Logged models and the model registry with aliases: ``candidate`` for a new version, ``champion`` for the one that
serves.

A training run logs its model once, as an MLflow *logged model*: the ``save_pretrained`` folder (safetensors + YAML
config, never a pickle) under ``weights/``, the run's config, and an ``MLmodel`` file whose ``python_function``
flavour names a loader module (:mod:`reviosa.serve.pyfunc`) instead of a pickled object, with the signature of its
inputs and outputs. A registered version's source is that logged model, so the registry, the run and the files are
one lineage; the version's tags carry the data version, scores, code commit and KFP run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from reviosa.tracking.naming import (
    CANDIDATE,
    CHAMPION,
    MODEL_ALIASES,
    TAG_DATA_MD5,
    TAG_DATA_NOTE,
    TAG_DATA_PATH,
    TAG_DATA_REPO,
    TAG_DATA_VERSION,
    TAG_EVAL_RUN,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_KFP_RUN_ID,
    TAG_KFP_RUN_NAME,
    TAG_SCORE_PREFIX,
    TAG_TRAIN_RUN,
    metric_key,
)

MODEL_ARTIFACT = "model"
MODEL_TYPE = "interrvos-segmentation"
WEIGHTS_DIR = "weights"
PYFUNC_LOADER = "reviosa.serve.pyfunc"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin")
TAG_CHAMPION_SINCE = "reviosa.champion.since"
TAG_CHAMPION_UNTIL = "reviosa.champion.until"
TAG_DEPLOYED_TO = "reviosa.deploy.isvc"  # namespace/name of the InferenceService serving the version
TAG_DEPLOYED_AT = "reviosa.deploy.at"
# The key MLflow's own register_model keeps on a logged model, so its page lists the versions made from it.
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"
# Run tags a version inherits from the run that trained it.
_LINEAGE_KEYS = (TAG_DATA_VERSION, TAG_DATA_MD5, TAG_DATA_REPO, TAG_DATA_PATH, TAG_DATA_NOTE, TAG_GIT_COMMIT,
                 TAG_GIT_DIRTY, TAG_KFP_RUN_ID, TAG_KFP_RUN_NAME)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _refuse_pickles(paths: list[Path]) -> None:
    found = [str(f) for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.suffix in PICKLE_SUFFIXES]
    if found:
        raise ValueError(f"refusing pickle-based weight files {found}; save safetensors instead")


def signature():
    """What the pyfunc wrapper takes and returns: RGB frames plus an ``expression`` param in, mask tracks out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "frames")]),
                          outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1), "actor"),
                                          TensorSpec(np.dtype(np.uint8), (-1, -1, -1), "target")]),
                          params=ParamSchema([ParamSpec("expression", "string", "")]))


def log_logged_model(client, run_id: str, directory: str | os.PathLike, *, name: str, step: int = 0,
                     params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
                     files: Mapping[str, str] | None = None):
    """Log a ``save_pretrained`` folder as run ``run_id``'s logged model (``files``: extra text files by name);
    returns the finalized ``LoggedModel``."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder {directory} does not exist")
    _refuse_pickles([directory])
    exp_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(exp_id, name=name, source_run_id=run_id, tags=dict(tags or {}),
                                       params=dict(params or {}), model_type=MODEL_TYPE)
    try:
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
        client.log_model_artifacts(model.model_id, str(directory), WEIGHTS_DIR)
        meta = Model(artifact_path=model.artifact_location, run_id=run_id, model_uuid=model.model_id,
                     model_id=model.model_id, signature=signature(),
                     metadata={"format": "reviosa save_pretrained", "weights": WEIGHTS_DIR,
                               "outputs": "actor, target: uint8 (T, H, W) masks; text: the model's answer"})
        mlflow.pyfunc.add_to_model(meta, loader_module=PYFUNC_LOADER, data=WEIGHTS_DIR)
        with tempfile.TemporaryDirectory(prefix="reviosa-mlmodel-") as tmp:
            meta.save(os.path.join(tmp, "MLmodel"))
            for file_name, text in (files or {}).items():
                Path(tmp, file_name).write_text(text)
            client.log_model_artifacts(model.model_id, tmp)
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    return client.finalize_logged_model(model.model_id, "READY")


def logged_model_id(version) -> str:
    """The logged model a registered version was made from ("" for a version of run files)."""
    # The registry's SQL store keeps only the source URI (models:/<model id>), not the model_id field.
    if version.model_id:
        return version.model_id
    source = version.source or ""
    tail = source.removeprefix("models:/")
    return tail if source.startswith("models:/") and "/" not in tail and tail.startswith("m-") else ""


def logged_models_of(client, run_id: str) -> list[str]:
    """Ids of the models run ``run_id`` logged, the last step's last."""
    outputs = client.get_run(run_id).outputs
    return [o.model_id for o in sorted(outputs.model_outputs if outputs else [], key=lambda o: o.step)]


def version_tags(run, scores: Mapping[str, float] | None = None, eval_run_id: str = "",
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags of a version trained by ``run``: its data version, code commit and KFP run, the scores, the runs."""
    tags = {k: run.data.tags[k] for k in _LINEAGE_KEYS if run.data.tags.get(k)}
    tags[TAG_TRAIN_RUN] = run.info.run_id
    if eval_run_id:
        tags[TAG_EVAL_RUN] = eval_run_id
    tags.update({TAG_SCORE_PREFIX + metric_key(k): f"{float(v):.4f}" for k, v in (scores or {}).items()})
    tags.update(extra or {})
    return tags


def version_description(run, tags: Mapping[str, str], tracking_uri: str = "") -> str:
    """A few Markdown lines saying where the version comes from (shown on its registry page)."""
    from reviosa.tracking.ui import run_url

    link = run_url(tracking_uri, run.info.experiment_id, run.info.run_id)
    lines = [f"Trained by run [{run.info.run_name}]({link}) on {tags.get(TAG_DATA_VERSION, 'untracked')} "
             f"(md5 {tags.get(TAG_DATA_MD5, '-')}, {tags.get(TAG_DATA_REPO, '-')} {tags.get(TAG_DATA_PATH, '')}),",
             f"code {tags.get(TAG_GIT_COMMIT, 'unknown')}" + (" (dirty)" if tags.get(TAG_GIT_DIRTY) == "true" else "")
             + (f", KFP run {tags[TAG_KFP_RUN_ID]} {tags.get(TAG_KFP_RUN_NAME, '')}".rstrip() if TAG_KFP_RUN_ID in tags
                else "") + "."]
    scores = {k.removeprefix(TAG_SCORE_PREFIX): v for k, v in tags.items() if k.startswith(TAG_SCORE_PREFIX)}
    if scores:
        lines.append("InterRVOS: " + ", ".join(f"{k} {v}" for k, v in sorted(scores.items())) + ".")
    return "\n\n".join(lines)


def _ensure_registered(client, name: str, description: str = "") -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description or None)


def register_model(client, name: str, model_id: str, *, tags: Mapping[str, str] | None = None, description: str = "",
                   alias: str | None = CANDIDATE):
    """A new version of ``name`` whose source is the logged model ``model_id`` (and run, the run that logged it),
    pointed at by ``alias``."""
    if alias is not None and alias not in MODEL_ALIASES:
        raise ValueError(f"alias {alias!r} is not one of {MODEL_ALIASES}")
    model = client.get_logged_model(model_id)
    _ensure_registered(client, name)
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=model.source_run_id,
                                          tags=dict(tags or {}), description=description or None, model_id=model_id)
    made = json.loads(model.tags.get(_MODEL_VERSIONS_TAG) or "[]") + [{"name": name, "version": version.version}]
    client.set_logged_model_tags(model_id, {_MODEL_VERSIONS_TAG: json.dumps(made)})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def log_model_files(client, run_id: str, files: list[str | os.PathLike]) -> str:
    """Upload model files into the run's ``model/`` folder; return the ``runs:/`` URI to register."""
    paths = [Path(f) for f in files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"model files not found: {missing}")
    _refuse_pickles(paths)
    for p in paths:
        if p.is_dir():
            client.log_artifacts(run_id, str(p), MODEL_ARTIFACT)
        else:
            client.log_artifact(run_id, str(p), MODEL_ARTIFACT)
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


def register(client, name: str, run_id: str, *, alias: str | None = CANDIDATE, description: str = ""):
    """A new version of ``name`` from the run's last logged model (with the run's lineage as tags), else from its
    ``model/`` files, pointed at by ``alias``."""
    if alias is not None and alias not in MODEL_ALIASES:
        raise ValueError(f"alias {alias!r} is not one of {MODEL_ALIASES}")
    if models := logged_models_of(client, run_id):
        run = client.get_run(run_id)
        tags = version_tags(run)
        return register_model(client, name, models[-1], tags=tags, alias=alias,
                              description=description or version_description(run, tags, client.tracking_uri))
    _ensure_registered(client, name, description)
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
    version = client.create_model_version(name, source=source, run_id=run_id, description=description or None)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def resolve(client, name: str, alias: str = CHAMPION):
    """The model version ``name@alias``; a clear error names the aliases that do exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        try:
            have = sorted(client.get_registered_model(name).aliases)
        except MlflowException:
            raise LookupError(f"registered model {name!r} does not exist") from None
        raise LookupError(f"model {name!r} has no alias {alias!r} (aliases: {have or 'none'}): {err.message}") from None


def promote(client, name: str, version: str | None = None):
    """Make ``version`` (default: the current candidate) the champion and drop the candidate alias from it; the
    versions' tags record since when each was champion."""
    from mlflow.exceptions import MlflowException

    mv = client.get_model_version(name, version) if version else resolve(client, name, CANDIDATE)
    try:
        before = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        before = None
    now = _now()
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    if CANDIDATE in (mv.aliases or []):
        client.delete_registered_model_alias(name, CANDIDATE)
    client.set_model_version_tag(name, mv.version, TAG_CHAMPION_SINCE, now)
    if before is not None and str(before.version) != str(mv.version):
        client.set_model_version_tag(name, before.version, TAG_CHAMPION_UNTIL, now)
    return client.get_model_version(name, mv.version)


def deployment_annotations(client, name: str, version: str) -> dict[str, str]:
    """InferenceService annotations naming the registered version it serves and that version's lineage."""
    mv = client.get_model_version(name, version)
    tags = mv.tags or {}
    found = {"reviosa.io/model": name, "reviosa.io/model-version": str(mv.version),
             "reviosa.io/model-aliases": ",".join(sorted(mv.aliases or [])), "reviosa.io/model-source": mv.source,
             "reviosa.io/mlflow-run-id": mv.run_id, "reviosa.io/data-version": tags.get(TAG_DATA_VERSION),
             "reviosa.io/data-md5": tags.get(TAG_DATA_MD5), "reviosa.io/git-commit": tags.get(TAG_GIT_COMMIT),
             "reviosa.io/kfp-run-id": tags.get(TAG_KFP_RUN_ID)}
    return {k: str(v) for k, v in found.items() if v}


def record_deployment(client, name: str, version: str, namespace: str, service: str) -> None:
    """Tag the version with the InferenceService now serving it, and the registered model with which version each
    InferenceService serves."""
    where = f"{namespace}/{service}"
    client.set_model_version_tag(name, version, TAG_DEPLOYED_TO, where)
    client.set_model_version_tag(name, version, TAG_DEPLOYED_AT, _now())
    client.set_registered_model_tag(name, f"reviosa.deployed.{namespace}.{service}", str(version))


def download(client, name: str, alias: str, dst: str | os.PathLike) -> Path:
    """Download the files of ``name@alias`` (its logged model, or the run folder it came from) into ``dst``."""
    import mlflow.artifacts

    mv = resolve(client, name, alias)
    model_id = logged_model_id(mv)
    uri = client.get_logged_model(model_id).artifact_location if model_id else mv.source
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                    tracking_uri=client.tracking_uri))
