"""Where the tracking server is: explicit URI, ``$MLFLOW_TRACKING_URI``, or the local stack (the default state
folder's, else the last stack it lists, e.g. the one ``reviosa demo --keep-services`` left running)."""

from __future__ import annotations

import os
from pathlib import Path

from reviosa.services.stack import load_state, registered_stacks


def resolve_tracking_uri(uri: str | None = None, state: Path | None = None) -> str:
    """The tracking URI to use; raise with the three ways to set one if none is found."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    for root in [state, *reversed(list(registered_stacks(state)))]:
        srv = load_state(root).servers.get("mlflow")
        if srv is not None and srv.alive():
            return srv.url
    raise RuntimeError("no MLflow server: pass --tracking-uri, set MLFLOW_TRACKING_URI, or run `reviosa services up`")


def client(uri: str | None = None):
    """An ``MlflowClient`` for the resolved server."""
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)
