"""Model registry with aliases: ``candidate`` for a new version, ``champion`` for the one that serves.

Weights are logged as plain files (safetensors + JSON config) rather than pickled pyfunc models, so a KServe
predictor can load them without unpickling anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from reviosa.tracking.naming import CANDIDATE, CHAMPION, MODEL_ALIASES

MODEL_ARTIFACT = "model"


def log_model_files(client, run_id: str, files: list[str | os.PathLike]) -> str:
    """Upload model files into the run's ``model/`` folder; return the ``runs:/`` URI to register."""
    paths = [Path(f) for f in files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"model files not found: {missing}")
    pickled = [str(p) for p in paths if p.suffix in (".pkl", ".pickle", ".pt", ".pth", ".bin")]
    if pickled:
        raise ValueError(f"refusing pickle-based weight files {pickled}; save safetensors instead")
    for p in paths:
        if p.is_dir():
            client.log_artifacts(run_id, str(p), MODEL_ARTIFACT)
        else:
            client.log_artifact(run_id, str(p), MODEL_ARTIFACT)
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


def register(client, name: str, run_id: str, *, alias: str | None = CANDIDATE, description: str = ""):
    """Create a new version of ``name`` from the run's ``model/`` files and point ``alias`` at it."""
    from mlflow.exceptions import MlflowException

    if alias is not None and alias not in MODEL_ALIASES:
        raise ValueError(f"alias {alias!r} is not one of {MODEL_ALIASES}")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description or None)
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
    """Make ``version`` (default: the current candidate) the champion and drop the candidate alias from it."""
    mv = client.get_model_version(name, version) if version else resolve(client, name, CANDIDATE)
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    if CANDIDATE in (mv.aliases or []):
        client.delete_registered_model_alias(name, CANDIDATE)
    return client.get_model_version(name, mv.version)


def download(client, name: str, alias: str, dst: str | os.PathLike) -> Path:
    """Download the files of ``name@alias`` into ``dst``."""
    import mlflow.artifacts

    mv = resolve(client, name, alias)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(dst),
                                                    tracking_uri=client.tracking_uri))
