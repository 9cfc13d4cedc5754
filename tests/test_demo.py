"""The README's main command, ``reviosa demo``: the end-to-end pipeline on this machine, then serve and query."""

from __future__ import annotations

import io
import json
import logging
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
        from reviosa.services import stack

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
    # What a person reads: one line per stage, the table and where to look; all the chatter is in the log.
    console = proc.stdout.splitlines()
    assert len(console) + len(proc.stderr.splitlines()) < 60, proc.stdout + proc.stderr
    found = [m.groups() for m in map(re.compile(r"\[ ?(\d+)/(\d+)\] (.+?) \.{3,} +\d+\.\d s$").match, console) if m]
    assert [int(n) for n, _, _ in found] == list(range(1, len(found) + 1))
    assert {int(total) for _, total, _ in found} == {len(found)}  # the count announced was the count run
    labels = [label for *_, label in found]
    assert labels[:2] == ["start S3 + MLflow", "synthesize videos (6 train, 2 val)"]
    assert labels[-2:] == ["serve the model (KServe), query it", "score the baselines"]
    assert {"pipeline: fetch raw split [raw_train]", "pipeline: fetch raw split [raw_val]", "pipeline: train ReVIOSa",
            "pipeline: predict", "pipeline: register (MLflow, candidate)",
            "pipeline: record final status"} <= set(labels)
    log = out.resolve() / "demo.log"
    assert console[0].endswith(f"everything else goes to {log}") and f"full log: {log}" in console
    chatter = log.read_text()
    for line in ("[KFP Executor", "Executing task", "step 6/6 loss", "Task 'register' outputs:"):
        assert line in re.sub(r"\x1b\[[0-9;]*m", "", chatter) and line not in proc.stdout + proc.stderr


def test_pipeline_tasks_get_one_readable_label_each():
    from reviosa.pipelines.local import pipeline_tasks

    tasks = {t.name: t for t in pipeline_tasks("end-to-end")}
    assert tasks["train"].label == "train ReVIOSa" and not tasks["train"].conditional
    assert tasks["deploy"].conditional  # only with deploy_model=True
    # The same step on both splits is told apart by the pipeline input it reads.
    assert (tasks["fetch-split"].label, tasks["fetch-split-2"].label) == (
        "fetch raw split [raw_train]", "fetch raw split [raw_val]")
    assert len({t.label for t in tasks.values()}) == len(tasks)


def test_kfp_local_task_records_become_stage_lines():
    from reviosa.pipelines.console import Stages
    from reviosa.pipelines.demo import _PipelineStages
    from reviosa.pipelines.local import LocalTask, task_events

    def name(task):
        return f"\x1b[96m'{task}'\x1b[0m"  # as kfp.local colours it

    out = io.StringIO()
    stages = Stages(total=4, stream=out)
    tasks = [LocalTask("fetch-split", "fetch raw split [raw_train]", False), LocalTask("train", "train ReVIOSa", False)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # kfp.local sets INFO around each task
    try:
        with task_events(_PipelineStages(stages, tasks)):
            # train fails once and is retried; predict fails for good, then the exit handler runs.
            for task, status in [("fetch-split", "SUCCESS"), ("train", "FAILURE"), ("train", "SUCCESS"),
                                 ("predict", "FAILURE"), ("record-failure", "SUCCESS")]:
                logging.info(f"Executing task {name(task)}")
                logging.info(f"Task {name(task)} outputs:\n    x: 1")
                logging.info(f"Task {name(task)} finished with status \x1b[92m{status}\x1b[0m")
        logging.info(f"Executing task {name('after')}")  # no longer listened to
    finally:
        root.setLevel(level)
    lines = out.getvalue().splitlines()
    assert [line.split(" .")[0] for line in lines] == [
        "[1/4] pipeline: fetch raw split [raw_train]", "[2/4] pipeline: train ReVIOSa", "[3/4] pipeline: predict",
        "[4/4] pipeline: record-failure"]
    assert ["FAILED" in line for line in lines] == [False, False, True, False]
