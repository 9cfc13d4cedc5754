"""The README's main command, ``reviosa demo``: the end-to-end pipeline on this machine, then serve and query."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient


def _table(stdout: str) -> dict[str, tuple[float, float, float]]:
    """Rows of the printed InterRVOS table: method -> (Actor, Target, RVOS) J&F x100."""
    rows = re.finditer(r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", stdout, re.M)
    return {m.group(1).strip(): tuple(float(x) for x in m.groups()[1:]) for m in rows}


@pytest.mark.slow
def test_demo_runs_the_end_to_end_pipeline_and_serves_the_registered_model(tmp_path, _server_env):
    out = tmp_path / "demo"
    exe = Path(sys.executable).parent / "reviosa"
    proc = subprocess.run([str(exe), "demo", "--out", str(out), "--train-videos", "6", "--val-videos", "2",
                           "--steps", "6", "--keep-services"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        res = json.loads((out / "demo_result.json").read_text())
        # Registered with its scores in the MLflow of the run, which --keep-services left running.
        client = MlflowClient(tracking_uri=res["tracking_uri"], registry_uri=res["tracking_uri"])
        mv = client.get_model_version_by_alias("reviosa-demo", "candidate")
        assert str(mv.version) == res["model_version"]
        assert {"actor_J", "actor_F", "actor_JF", "rvos_JF"} <= set(res["metrics"])
        assert all(0.0 <= v <= 1.0 for v in res["metrics"].values())
        assert client.get_run(mv.run_id).data.tags["reviosa.data_version"] == "data-v2"
    finally:
        from reviosa.storage import stack

        stack.down(out / "stack")
    # The printed table: the trained model's registered scores beside the baselines on the same split.
    table = _table(proc.stdout)
    model_row = table["ReVIOSa-tiny (6 steps)"]
    assert model_row[0] == pytest.approx(100 * res["metrics"]["actor_JF"], abs=0.05)
    assert model_row[2] == pytest.approx(100 * res["metrics"]["rvos_JF"], abs=0.05)
    assert table["oracle"] == (100.0, 100.0, 100.0)
    assert table["empty"][2] < table["largest-moving"][2] < 100.0
    for name in ("oracle", "empty", "largest-moving"):
        report = out / "baselines" / "eval" / name
        assert json.loads((report / "results.json").read_text())["missing"] == []
        assert (report / "jf_hist.png").stat().st_size > 1000
    # Two dataset versions (train, then train + val) were pushed and tagged by the snapshot steps.
    tags = subprocess.run(["git", "-C", res["data_repo"], "tag", "--list"], capture_output=True, text=True).stdout
    assert tags.split() == ["data-v1", "data-v2"]
    # The exit handler recorded the final state.
    run = next(Path(res["pipeline_root"]).glob("reviosa-end-to-end-*"))
    assert json.loads((run / "record-failure" / "record").read_text())["state"] == "SUCCEEDED"
    # A real ModelServer served the registered model and answered a v2 request for a val video (8 frames).
    assert res["served"]["frames"] == 8 and isinstance(res["served"]["text"], str)
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(res["served"]["url"] + "/v2/health/ready", timeout=2)  # stopped afterwards
    assert "MLflow: http://127.0.0.1:" in proc.stdout and res["seconds"]["total"] > 0
