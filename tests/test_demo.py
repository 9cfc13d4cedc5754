"""The README's main command, ``reviosa demo``: the end-to-end pipeline on this machine, then serve and query.

The screenshot of the training run's MLflow page is kept as a CI artifact under ``$REVIOSA_ARTIFACTS_DIR`` (default:
the test's tmp folder), next to the compare-runs one.
"""

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
from typer.testing import CliRunner

from reviosa.cli import app


def _table(stdout: str) -> dict[str, tuple[float, float, float]]:
    """Rows of the printed InterRVOS table: method -> (Actor, Target, RVOS) J&F x100."""
    rows = re.finditer(r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", stdout, re.M)
    return {m.group(1).strip(): tuple(float(x) for x in m.groups()[1:]) for m in rows}


@pytest.mark.slow
def test_demo_runs_the_end_to_end_pipeline_and_serves_the_registered_model(tmp_path, _server_env):
    out = tmp_path / "demo"
    exe = Path(sys.executable).parent / "reviosa"
    # The default state folder, where the demo lists its own stack for `reviosa services status|down`.
    state = {"REVIOSA_STATE_DIR": str(tmp_path / "state")}
    # seed 1: the two held-out videos hold a directed interaction, so Actor and Target are scored
    proc = subprocess.run([str(exe), "demo", "--out", str(out), "--train-videos", "6", "--val-videos", "2",
                           "--steps", "6", "--seed", "1", "--keep-services"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "2", **state})
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        res = json.loads((out / "demo_result.json").read_text())
        # Registered with its scores in the MLflow of the run, which --keep-services left running.
        client = MlflowClient(tracking_uri=res["tracking_uri"], registry_uri=res["tracking_uri"])
        mv = client.get_model_version_by_alias("reviosa-demo", "candidate")
        assert str(mv.version) == res["model_version"]
        assert {"actor_J", "actor_F", "actor_JF", "rvos_JF"} <= set(res["metrics"])
        assert all(0.0 <= v <= 1.0 for v in res["metrics"].values())
        assert "answer_form_acc" in res["metrics"] and "have the right form" in proc.stdout
        _check_lineage(client, mv, res, state, Path(os.environ.get("REVIOSA_ARTIFACTS_DIR") or tmp_path))
        # What --keep-services left running, `reviosa services` lists and stops.
        status = CliRunner().invoke(app, ["services", "status"], env=state)
        assert status.exit_code == 0 and f"reviosa demo in {out.resolve()}" in status.output, status.output
        assert status.output.count(" up ") == 2, status.output
        down = CliRunner().invoke(app, ["services", "down"], env=state)
        assert down.exit_code == 0 and "mlflow, s3" in down.output, down.output
        assert CliRunner().invoke(app, ["services", "status"], env=state).exit_code == 1
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
    assert "stop them with `reviosa services down`" in proc.stdout
    assert "reviosa runs lineage reviosa-demo@candidate" in proc.stdout
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


def _check_lineage(client, mv, res: dict, state: dict, artifacts: Path) -> None:
    """The registered version traces to the training run's logged model, the DVC tag the pipeline made, the code
    commit and the KFP run; `reviosa runs lineage` prints that chain; the run page shows it in a real browser."""
    from reviosa.tracking.ui import find_chromium, rendered_dom, run_url, screenshot

    repo = res["data_repo"]
    git = lambda *a: subprocess.run(["git", "-C", repo, *a], capture_output=True, text=True).stdout  # noqa: E731
    md5 = re.search(r"md5: (\S+)", git("show", "data-v2:data.dvc"))[1]
    run = client.get_run(res["train_run_id"])
    tags = run.data.tags
    assert run.info.run_name == "train-tiny-aml-tokens-data-v2"
    assert (tags["reviosa.data.version"], tags["reviosa.data.md5"], tags["reviosa.data.repo"]) == ("data-v2", md5, repo)
    (data_input,) = run.inputs.dataset_inputs
    assert (data_input.dataset.name, data_input.dataset.digest) == ("train@data-v2", md5.removesuffix(".dir"))
    assert json.loads(data_input.dataset.source) == {"repo": repo, "rev": "data-v2", "path": "data/train", "md5": md5}
    kfp_run = next(Path(res["pipeline_root"]).glob("reviosa-end-to-end-*")).name
    assert tags["reviosa.kfp.run_name"] == kfp_run and tags["reviosa.kfp.run_id"].isdigit()
    assert f"**data-v2** (md5 {md5}" in tags["mlflow.note.content"] and kfp_run in tags["mlflow.note.content"]
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # One model: logged by the training run, registered from there (not copied under another run).
    model = client.get_logged_model(res["model_id"])
    assert mv.source == f"models:/{model.model_id}" and mv.run_id == model.source_run_id == run.info.run_id
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert model.params["init_from"] == "reviosa-tiny-base"  # fine-tuned from the shipped pretrained base
    for key, value in (("reviosa.data.version", "data-v2"), ("reviosa.data.md5", md5),
                       ("mlflow.source.git.commit", tags["mlflow.source.git.commit"]),
                       ("reviosa.kfp.run_id", tags["reviosa.kfp.run_id"]), ("reviosa.train.run_id", run.info.run_id),
                       ("reviosa.eval.run_id", res["eval_run_id"])):
        assert mv.tags[key] == value, key
    assert float(mv.tags["reviosa.score.actor_JF"]) == pytest.approx(res["metrics"]["actor_JF"], abs=1e-4)
    assert "data-v2" in mv.description and run.info.run_name in mv.description
    (scored_on,) = client.get_run(res["eval_run_id"]).inputs.dataset_inputs
    assert scored_on.dataset.name == "val@data-v2"
    # The chain, found through the demo's stack in the default state folder (no --tracking-uri).
    chain = CliRunner().invoke(app, ["runs", "lineage", "reviosa-demo@candidate"], env=state)
    assert chain.exit_code == 0, chain.output
    lines = chain.output.splitlines()
    for i, text in enumerate([f"reviosa-demo version {mv.version}", model.model_id, run.info.run_name,
                              f"data-v2 (md5 {md5}) data/train in {repo}", tags["mlflow.source.git.commit"],
                              f"{tags['reviosa.kfp.run_id']} {kfp_run}"]):
        assert text in lines[i + (i > 3)], (text, chain.output)  # line 4 lists the run's dataset input
    assert f"actor_JF     {res['metrics']['actor_JF']:.4f}" in chain.output
    # The training run's page in a real Chromium: data version, dataset input, logged and registered model.
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("headless Chromium is required for the MLflow UI check: `apt-get install -y chromium`")
    url = run_url(res["tracking_uri"], run.info.experiment_id, run.info.run_id)
    # Tall enough that the page's last section, the logged models, is in the screenshot too.
    window = (1600, 2600)
    dom = rendered_dom(url, chromium=chromium, window=window)
    for text in (run.info.run_name, "Fine-tunes reviosa-tiny", "train@data-v2", "reviosa.data.version",
                 "Logged models (1)", model.model_id, "reviosa-demo", "Model registry"):
        assert text in dom, f"{text!r} not shown on {url}"
    png = screenshot(url, artifacts / "mlflow_training_run.png", chromium=chromium, window=window)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


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
