"""The embedded default end to end: local S3 + MLflow, synthetic data, kfp.local pipeline, serve and query."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from reviosa.pipelines.demo import DemoConfig, run_end_to_end


@pytest.mark.slow
def test_end_to_end_pipeline_runs_locally_and_serves_the_registered_model(tmp_path, _server_env):
    cfg = DemoConfig(train_videos=6, val_videos=2, steps=6, keep_services=True)
    lines: list[str] = []
    try:
        res = run_end_to_end(tmp_path / "demo", cfg, log=lines.append)
        # Registered with its scores in the MLflow of the run.
        client = MlflowClient(tracking_uri=res.tracking_uri, registry_uri=res.tracking_uri)
        mv = client.get_model_version_by_alias(cfg.model_name, "candidate")
        assert str(mv.version) == res.model_version
        assert {"actor_J", "actor_F", "actor_JF", "rvos_JF"} <= set(res.metrics)
        assert all(0.0 <= v <= 1.0 for v in res.metrics.values())
        tags = client.get_run(mv.run_id).data.tags
        assert tags["reviosa.data_version"] == "data-v2"
    finally:
        from reviosa.storage import stack

        stack.down(tmp_path / "demo" / "stack")
    # Two dataset versions (train, then train + val) were pushed and tagged by the snapshot steps.
    tags = subprocess.run(["git", "-C", res.data_repo, "tag", "--list"], capture_output=True, text=True).stdout
    assert tags.split() == ["data-v1", "data-v2"]
    # The exit handler recorded the final state.
    run = next(Path(res.pipeline_root).glob("reviosa-end-to-end-*"))
    assert json.loads((run / "record-failure" / "record").read_text())["state"] == "SUCCEEDED"
    # The model was served by a real ModelServer and answered a v2 request for a val video (8 frames).
    assert res.served["frames"] == 8 and isinstance(res.served["text"], str)
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(res.served["url"] + "/v2/health/ready", timeout=2)  # stopped afterwards
    assert any("MLflow" in line for line in lines)
    summary = json.loads((tmp_path / "demo" / "demo_result.json").read_text())
    assert summary["model_version"] == res.model_version and summary["seconds"]["total"] > 0
