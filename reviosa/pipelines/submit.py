"""Sending a compiled pipeline to a Kubeflow Pipelines API server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class SubmitError(RuntimeError):
    """The KFP server could not be reached or refused a request; the message names the server."""


def submit(host: str, spec: str | os.PathLike, params: dict[str, Any], *, experiment: str = "reviosa",
           run_name: str | None = None, pipeline_name: str | None = None, version_name: str | None = None,
           token: str | None = None, enable_caching: bool | None = None) -> dict[str, str]:
    """Upload ``spec`` as a pipeline (or a new version of it) and start a run; returns the ids and the run URL."""
    import kfp_server_api
    import urllib3

    spec = Path(spec)
    if not spec.is_file():
        raise FileNotFoundError(f"compiled pipeline {spec} does not exist (run `reviosa pipeline compile`)")
    try:
        return _submit(host, spec, params, experiment, run_name, pipeline_name, version_name, token, enable_caching)
    except urllib3.exceptions.HTTPError as err:
        raise SubmitError(f"KFP server {host} cannot be reached: {err}") from None
    except kfp_server_api.ApiException as err:
        raise SubmitError(f"KFP server {host} answered {err.status} {err.reason}: {err.body}") from None


def _submit(host: str, spec: Path, params: dict[str, Any], experiment: str, run_name: str | None,
            pipeline_name: str | None, version_name: str | None, token: str | None,
            enable_caching: bool | None) -> dict[str, str]:
    import kfp

    client = kfp.Client(host=host.rstrip("/"), existing_token=token)
    name = pipeline_name or spec.stem
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(spec), pipeline_name=name)
        pipeline_id = pipeline.pipeline_id
        version_id = None
    else:
        from datetime import datetime, timezone

        version = client.upload_pipeline_version(
            str(spec), pipeline_version_name=version_name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
            pipeline_id=pipeline_id)
        version_id = version.pipeline_version_id
    exp = client.create_experiment(experiment)
    if version_id is None:
        version_id = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc") \
            .pipeline_versions[0].pipeline_version_id
    run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=run_name or f"{name}-run",
                              pipeline_id=pipeline_id, version_id=version_id, params=params,
                              enable_caching=enable_caching)
    return {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": exp.experiment_id,
            "run_id": run.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
