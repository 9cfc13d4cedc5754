"""MLflow against a real server: evaluation runs with provenance tags, run comparison, registry aliases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _splits import make_split
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.storage.config import StorageConfig
from reviosa.storage.dataversions import DataRepo
from reviosa.tracking import registry
from reviosa.tracking.compare import compare_runs
from reviosa.tracking.evaluation import log_evaluation, mlflow_metrics
from reviosa.tracking.naming import experiment_name, metric_key

EVAL_A = {"actor_J": 0.50, "actor_F": 0.60, "actor_J&F": 0.55, "target_J": 0.30, "target_F": 0.40,
          "target_J&F": 0.35, "rvos_J&F": 0.52}
EVAL_B = {**EVAL_A, "actor_J": 0.70, "actor_J&F": 0.65, "rvos_J&F": 0.50}


def test_metric_names_are_made_mlflow_safe() -> None:
    assert metric_key("actor_J&F") == "actor_JF" and metric_key("rvos_J") == "rvos_J"
    with pytest.raises(ValueError, match="MLflow rejects"):
        metric_key("J%F")
    with pytest.raises(ValueError, match="both map"):
        mlflow_metrics({"actor_J&F": 1, "actor_JF": 1})
    with pytest.raises(ValueError, match="not a number"):
        mlflow_metrics({"actor_J": "high"})
    assert experiment_name("eval", "interrvos-val") == "reviosa/eval/interrvos-val"
    with pytest.raises(ValueError, match="slug"):
        experiment_name("Eval Runs")


def _gif(path: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


@pytest.fixture
def versioned_repo(git_repo: Path, s3_storage: StorageConfig) -> Path:
    repo = DataRepo(git_repo, s3_storage)
    repo.init()
    make_split(git_repo / "data" / "val")
    repo.snapshot("val split")
    return git_repo


def test_log_two_evaluations_and_compare(mlflow_server, versioned_repo: Path, tmp_path: Path) -> None:
    table = tmp_path / "per_expression.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["video", "exp_id", "actor_J", "target_J"], ["vid_a", "2", "0.5", "0.3"],
                     ["vid_b", "0", "0.4", ""]])
    plot = tmp_path / "jf_by_type.png"
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(plot)
    run_a = log_evaluation(EVAL_A, dataset="toy", run_name="baseline", params={"model": "oracle"},
                           per_expression=table, plots=[plot], gifs=[_gif(tmp_path / "vid_a_2.gif")],
                           tracking_uri=mlflow_server.tracking_uri, repo_root=versioned_repo)
    run_b = log_evaluation(EVAL_B, dataset="toy", run_name="better",
                           per_expression=[{"video": "vid_a", "exp_id": "2", "actor_J": 0.7}],
                           tracking_uri=mlflow_server.tracking_uri, repo_root=versioned_repo)

    client = mlflow_server.client()
    run = client.get_run(run_a)
    assert run.data.metrics == {metric_key(k): v for k, v in EVAL_A.items()}
    assert run.data.params == {"model": "oracle"}
    # The code's commit (this checkout's), not the data repository's; the data's version is a tag and an input.
    head = __import__("subprocess").run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parents[1],
                                        capture_output=True, text=True).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.data.tags["reviosa.data.version"] == "data-v1"
    assert run.data.tags["reviosa.data.md5"].endswith(".dir")
    (data_input,) = run.inputs.dataset_inputs
    assert (data_input.dataset.name, data_input.dataset.source_type) == ("data@data-v1", "dvc")
    assert json.loads(data_input.dataset.source)["rev"] == "data-v1"
    assert client.get_experiment(run.info.experiment_id).name == "reviosa/eval/toy"
    arts = {a.path for d in ("tables", "plots", "overlays") for a in client.list_artifacts(run_a, d)}
    assert arts == {"tables/per_expression.csv", "tables/per_expression.json", "plots/jf_by_type.png",
                    "overlays/vid_a_2.gif"}
    dl = Path(client.download_artifacts(run_a, "tables/per_expression.csv", str(tmp_path / "dl")))
    assert dl.read_bytes().replace(b"\r\n", b"\n") == table.read_bytes().replace(b"\r\n", b"\n")

    deltas = {d.key: d.delta for d in compare_runs(run_a, run_b, client)}
    assert deltas["actor_J"] == pytest.approx(0.2) and deltas["rvos_JF"] == pytest.approx(-0.02)
    assert deltas["target_F"] == 0

    res = CliRunner().invoke(app, ["runs", "compare", run_a, run_b, "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines()[1:]}
    assert "#/compare-runs?runs=" in res.stderr
    assert rows["actor_JF"] == ["0.5500", "0.6500", "+0.1000"]
    assert rows["rvos_JF"][-1] == "-0.0200" and len(rows) == len(EVAL_A)
    bad = CliRunner().invoke(app, ["runs", "compare", run_a, "0" * 32, "--tracking-uri", mlflow_server.tracking_uri])
    assert bad.exit_code == 1 and "not found" in bad.output


def test_log_eval_cli_and_bad_input(mlflow_server, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"actor_J&F": 0.4}))
    res = CliRunner().invoke(app, ["runs", "log-eval", str(tmp_path / "m.json"), "--dataset", "toy",
                                   "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0, res.output
    assert mlflow_server.client().get_run(res.stdout.strip()).data.metrics == {"actor_JF": 0.4}
    with pytest.raises(FileNotFoundError, match="missing.png"):
        log_evaluation(EVAL_A, dataset="toy", plots=[tmp_path / "missing.png"], tracking_uri=mlflow_server.tracking_uri)
    with pytest.raises(ValueError, match="columns"):
        log_evaluation(EVAL_A, dataset="toy", per_expression=[{"a": 1}, {"b": 2}],
                       tracking_uri=mlflow_server.tracking_uri)


def test_register_model_and_resolve_by_alias(mlflow_server, tmp_path: Path) -> None:
    from mlflow.entities import RunStatus
    from safetensors.numpy import load_file, save_file

    client = mlflow_server.client()
    exp = client.create_experiment(f"reviosa/train/toy-{tmp_path.name}")
    name = f"reviosa-toy-{tmp_path.name}".replace("_", "-")
    pickled = tmp_path / "weights.pt"
    pickled.write_bytes(b"\x80\x04")
    weights = []
    for i in range(2):
        run = client.create_run(exp)
        w = tmp_path / f"w{i}" / "model.safetensors"
        w.parent.mkdir()
        save_file({"proj.weight": np.full((2, 3), i, np.float32)}, str(w))
        (w.parent / "config.json").write_text(json.dumps({"hidden": 3}))
        with pytest.raises(ValueError, match="pickle"):
            registry.log_model_files(client, run.info.run_id, [w.parent / "config.json", pickled])
        registry.log_model_files(client, run.info.run_id, [w, w.parent / "config.json"])
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        weights.append((run.info.run_id, w))

    v1 = registry.register(client, name, weights[0][0])
    registry.promote(client, name)
    v2 = registry.register(client, name, weights[1][0])
    assert (registry.resolve(client, name, "champion").version, registry.resolve(client, name, "candidate").version) \
        == (v1.version, v2.version)

    got = registry.download(client, name, "candidate", tmp_path / "dl")
    assert load_file(str(got / "model.safetensors"))["proj.weight"].tolist() == [[1.0] * 3] * 2
    runner = CliRunner()
    res = runner.invoke(app, ["runs", "promote", name, "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0 and f"version {v2.version} is now champion" in res.output
    # Promotion leaves a record on both versions.
    assert "reviosa.champion.until" in client.get_model_version(name, v1.version).tags
    assert "reviosa.champion.since" in client.get_model_version(name, v2.version).tags
    res = runner.invoke(app, ["runs", "resolve", name, "--alias", "champion", "--tracking-uri",
                              mlflow_server.tracking_uri])
    assert res.exit_code == 0 and f"version {v2.version}, run {weights[1][0]}" in res.output
    with pytest.raises(LookupError, match="no alias 'candidate'"):
        registry.resolve(client, name, "candidate")  # promotion moved it
    with pytest.raises(LookupError, match="does not exist"):
        registry.resolve(client, name + "-nope", "champion")
    with pytest.raises(ValueError, match="alias"):
        registry.register(client, name, weights[0][0], alias="production")


def test_rollback_then_train_records_that_version_and_lineage_prints_the_chain(
        mlflow_server, versioned_repo: Path, s3_storage: StorageConfig, tmp_path: Path) -> None:
    """data-v1, then data-v2; `reviosa data rollback data-v1` and a training run record data-v1 (tag and dataset
    input), its logged model registers with that lineage, and changed or unversioned data is said to be untracked."""
    from reviosa.tracking.context import find_data_version
    from reviosa.train.config import TrainConfig
    from reviosa.train.tracking import RunLogger

    env = {"REVIOSA_STORAGE_CONFIG": str(tmp_path / "storage.yaml")}
    (tmp_path / "storage.yaml").write_text(s3_storage.to_yaml())
    make_split(versioned_repo / "data" / "train")
    runner = CliRunner()
    res = runner.invoke(app, ["data", "snapshot", "-m", "add train", "--repo", str(versioned_repo)], env=env)
    assert res.exit_code == 0 and res.output.startswith("data-v2"), res.output
    res = runner.invoke(app, ["data", "rollback", "data-v1", "--repo", str(versioned_repo)], env=env)
    assert res.exit_code == 0, res.output

    split = versioned_repo / "data" / "val"
    cfg = TrainConfig.from_yaml("tiny", [f"data.train={split}", "data.val=null", f"out={tmp_path / 'run'}",
                                         f"tracking.uri={mlflow_server.tracking_uri}", "tracking.system_metrics=false",
                                         f"tracking.experiment=reviosa/train-{tmp_path.name.replace('_', '-')}"])
    logger = RunLogger(cfg, resume=False)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.yaml").write_text("name: reviosa-tiny\n")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(ckpt / "reviosa.safetensors"))
    model_uri = logger.model(ckpt, step=1)
    logger.close()
    client = mlflow_server.client()
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "train-tiny-aml-tokens-data-v1"
    assert run.data.tags["reviosa.data.version"] == "data-v1" and run.data.tags["reviosa.data.path"] == "data/val"
    # The run page's description says the same in words.
    note = run.data.tags["mlflow.note.content"]
    assert "dataset version **data-v1**" in note and "launched by `reviosa train`" in note, note
    (data_input,) = run.inputs.dataset_inputs
    assert data_input.dataset.name == "val@data-v1" and data_input.tags[0].value == "training"
    assert [o.model_id for o in run.outputs.model_outputs] == [model_uri.removeprefix("models:/")]
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    name = f"lineage-{tmp_path.name}".replace("_", "-")
    res = runner.invoke(app, ["runs", "register", logger.run_id, "--name", name, "--tracking-uri",
                              mlflow_server.tracking_uri])
    assert res.exit_code == 0, res.output
    mv = registry.resolve(client, name, "candidate")
    assert mv.source == model_uri and mv.run_id == logger.run_id and mv.tags["reviosa.data.version"] == "data-v1"
    res = runner.invoke(app, ["runs", "lineage", f"{name}@candidate", "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0, res.output
    chain = res.output
    for text in (f"{name} version {mv.version}", model_uri.removeprefix("models:/"), "train-tiny-aml-tokens-data-v1",
                 "data-v1 (md5 " + run.data.tags["reviosa.data.md5"], run.data.tags["mlflow.source.git.commit"],
                 "KFP run       none"):
        assert text in chain, chain
    assert chain.index("training run") < chain.index("dataset") < chain.index("code") < chain.index("KFP run")
    # The hash is the one git holds for data-v1, not just whatever the run recorded.
    dvc_file = __import__("subprocess").run(["git", "show", "data-v1:data.dvc"], cwd=versioned_repo,
                                            capture_output=True, text=True, check=True).stdout
    assert f"md5: {run.data.tags['reviosa.data.md5']}" in dvc_file

    # Promotion and deployment name the version: its tags, the InferenceService's annotations, the lineage.
    from reviosa.pipelines import steps

    res = runner.invoke(app, ["runs", "promote", name, "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0, res.output
    manifest = tmp_path / "isvc.yaml"
    steps.deploy(name, "s3://models/x", "img@sha256:" + "0" * 64, 0, "ns", False, str(manifest),
                 str(mv.version), mlflow_server.tracking_uri)
    notes = __import__("yaml").safe_load(manifest.read_text())["metadata"]["annotations"]
    assert (notes["reviosa.io/model"], notes["reviosa.io/model-version"], notes["reviosa.io/model-aliases"],
            notes["reviosa.io/data-version"], notes["reviosa.io/mlflow-run-id"]) == (
        name, str(mv.version), "champion", "data-v1", logger.run_id)
    assert notes["reviosa.io/model-source"] == model_uri
    registry.record_deployment(client, name, str(mv.version), "ns", name)
    tags = client.get_model_version(name, mv.version).tags
    assert tags["reviosa.deploy.isvc"] == f"ns/{name}" and "reviosa.champion.since" in tags
    assert client.get_registered_model(name).tags[f"reviosa.deployed.ns.{name}"] == str(mv.version)
    res = runner.invoke(app, ["runs", "lineage", name, "--tracking-uri", mlflow_server.tracking_uri])
    assert res.exit_code == 0 and "(@champion)" in res.output, res.output
    assert f"note: served by InferenceService ns/{name}" in res.output and "note: champion since" in res.output
    by_number = runner.invoke(app, ["runs", "lineage", f"{name}/{mv.version}", "--tracking-uri",
                                    mlflow_server.tracking_uri])
    assert by_number.exit_code == 0 and by_number.output == res.output, by_number.output
    missing = runner.invoke(app, ["runs", "lineage", f"{name}-nope@champion", "--tracking-uri",
                                  mlflow_server.tracking_uri])
    assert missing.exit_code == 1 and "error:" in missing.output and "Traceback" not in missing.output

    # Changed since the version, or in no DVC repository at all: untracked, and the run says why.
    (split / "mask_dict.json").write_text("{}")
    changed = find_data_version(split)
    assert changed.version is None and "differs from data.dvc" in changed.note
    assert "no DVC-tracked folder" in find_data_version(tmp_path).note


def test_server_command_for_the_cluster() -> None:
    from reviosa.services.mlflow import SERVER_ENV, MlflowServerConfig

    storage = StorageConfig(endpoint="http://minio.mlops.svc:9000", bucket="mlops")
    argv = MlflowServerConfig("postgresql://mlflow@postgres:5432/mlflow", host="0.0.0.0",
                              allowed_hosts=["mlflow.mlops.svc.cluster.local:5000", "mlflow:5000"]).argv(storage)
    assert argv[:2] == ["mlflow", "server"] and argv[-1] == "--serve-artifacts"
    flags = dict(zip(argv[2:-1:2], argv[3:-1:2]))
    assert flags["--allowed-hosts"] == "mlflow.mlops.svc.cluster.local:5000,mlflow:5000"
    assert flags["--artifacts-destination"] == "s3://mlops/mlflow-artifacts"
    assert flags["--backend-store-uri"].startswith("postgresql://")
    assert SERVER_ENV["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
