"""KFP pipelines: compiled specs (GPU pool, retries, caching, exit handler, parameters) and a kfp.local run."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.pipelines import steps
from reviosa.pipelines.compile import PIPELINES, load_spec
from reviosa.pipelines.image import IMAGE

ROOT = Path(__file__).resolve().parents[1]
GPU_STEPS = {"training": {"train", "predict"}, "evaluation": {"predict"}, "end-to-end": {"train", "predict"},
             "annotation": set()}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    out = tmp_path_factory.mktemp("specs")
    res = CliRunner().invoke(app, ["pipeline", "compile", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return {name: load_spec(out / f"{name}.yaml") for name in PIPELINES}


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG (root, exit handler, conditions) by name."""
    found = {}
    for comp in [spec["root"], *spec["components"].values()]:
        found.update(comp.get("dag", {}).get("tasks", {}))
    return found


def test_every_spec_is_two_yaml_documents_with_the_project_image(specs, tmp_path):
    for name, (pipe, platform) in specs.items():
        assert pipe["pipelineInfo"]["name"].startswith("reviosa-"), name
        executors = pipe["deploymentSpec"]["executors"]
        assert executors
        for ex_name, ex in executors.items():
            container = ex["container"]
            assert container["image"] == IMAGE, (name, ex_name)
            # install_kfp_package=False: the pod never pip-installs anything at start.
            assert "pip install" not in " ".join(container["command"]), (name, ex_name)
        assert platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_gpu_steps_target_the_gpu_pool(specs, name):
    pipe, platform = specs[name]
    executors = pipe["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for ex_name, ex in executors.items():
        step = ex_name.removeprefix("exec-").rsplit("-", 1)[0] if ex_name[-1].isdigit() else ex_name[5:]
        res = ex["container"].get("resources", {})
        if step in GPU_STEPS[name]:
            # Training takes as many GPUs as the run's gpus_per_node; prediction one.
            count = "{{$.inputs.parameters['pipelinechannel--gpus_per_node']}}" if step == "train" else "1"
            accelerator = {k: res["accelerator"][k] for k in ("resourceType", "resourceCount")}
            assert accelerator == {"resourceType": "nvidia.com/gpu", "resourceCount": count}, ex_name
            assert k8s[ex_name]["nodeSelector"]["labels"] == {"reviosa.io/pool": "gpu"}
            toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            assert toleration in k8s[ex_name]["tolerations"]
            assert k8s[ex_name]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
        else:
            assert "accelerator" not in res, ex_name
            assert "tolerations" not in k8s.get(ex_name, {}), ex_name
            assert res.get("resourceCpuRequest") and res.get("resourceMemoryRequest"), ex_name


def test_retries_and_caching_choices(specs):
    tasks = _tasks(specs["end-to-end"][0])
    flaky = {"annotate", "annotate-2", "fetch-split", "fetch-split-2", "snapshot", "snapshot-2", "register", "deploy"}
    for name, task in tasks.items():
        if name in flaky:
            assert task["retryPolicy"]["maxRetryCount"] == 3, name
            assert task["retryPolicy"]["backoffDuration"] == "30s", name
    never_cached = {"annotate", "annotate-2", "fetch-split", "fetch-split-2", "snapshot", "snapshot-2", "register",
                    "deploy"}
    for name in never_cached:
        assert not tasks[name].get("cachingOptions", {}).get("enableCache", False), name
    for name in ("mask-tracks", "train", "predict", "evaluate"):
        assert tasks[name]["cachingOptions"]["enableCache"] is True, name
    assert "retryPolicy" not in tasks["train"]  # a GPU-hours step is not blindly re-run
    training = _tasks(specs["training"][0])
    assert training["fetch-split"]["cachingOptions"]["enableCache"] is True  # a DVC tag never changes


def test_end_to_end_order_exit_handler_and_ui_parameters(specs):
    pipe, platform = specs["end-to-end"]
    params = pipe["root"]["inputDefinitions"]["parameters"]
    assert {"data_repo", "model_size", "epochs", "aml", "tokens", "raw_train", "raw_val"} <= set(params)
    assert params["aml"]["parameterType"] == "BOOLEAN" and params["epochs"]["parameterType"] == "NUMBER_DOUBLE"
    root = pipe["root"]["dag"]["tasks"]
    assert root["record-failure"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert root["record-failure"]["dependentTasks"] == ["exit-handler-1"]
    tasks = _tasks(pipe)
    assert "snapshot-2" in tasks["train"]["dependentTasks"]
    assert {"train", "evaluate"} <= set(tasks["register"]["dependentTasks"])
    cond = [t for t in tasks.values() if "deploy_model" in json.dumps(t.get("triggerPolicy", {}))]
    assert cond, "deploy runs only when deploy_model is true"
    # Inside a condition the ordering edge sits on the condition's sub-DAG task.
    assert "register" in cond[0]["dependentTasks"] and "deploy" in tasks
    training = pipe["root"]["dag"]["tasks"]
    assert "exit-handler-1" in training
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["secretAsEnv"][0]["secretName"] == "reviosa-s3"


def test_s3_steps_read_the_mounted_storage_config(specs):
    """Steps with S3 keys get the cluster's storage.yaml as a file and MLflow's URL; no endpoint variables."""
    import yaml

    from reviosa.pipelines.resources import S3_SECRET, STORAGE_CONFIG_DIR, STORAGE_CONFIG_MAP
    from reviosa.storage.config import CONFIG_ENV

    config_map = yaml.safe_load((ROOT / "manifests" / "base" / "storage-config.yaml").read_text())
    assert config_map["metadata"]["name"] == STORAGE_CONFIG_MAP
    seen = 0
    for name, (pipe, platform) in specs.items():
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for ex_name, ex in pipe["deploymentSpec"]["executors"].items():
            conf = k8s.get(ex_name, {})
            if not any(s["secretName"] == S3_SECRET for s in conf.get("secretAsEnv", [])):
                continue
            seen += 1
            assert [(v["configMapName"], v["mountPath"]) for v in conf["configMapAsVolume"]] == \
                [(STORAGE_CONFIG_MAP, STORAGE_CONFIG_DIR)], (name, ex_name)
            # the path is a platform setting (kfp.local ignores it): a local step keeps its parent's config
            assert CONFIG_ENV not in {e["name"] for e in ex["container"].get("env", [])}, (name, ex_name)
            keys = {k["configMapKey"] for m in conf["configMapAsEnv"] for k in m["keyToEnv"]}
            assert keys == {CONFIG_ENV, "MLFLOW_TRACKING_URI"} and keys | {"storage.yaml"} == set(config_map["data"])
            assert config_map["data"][CONFIG_ENV] == f"{STORAGE_CONFIG_DIR}/storage.yaml"
    assert seen >= 4


def test_every_pipeline_parameter_has_a_description_for_the_kfp_ui(specs):
    """KFP reads the pipeline docstring's Google-style ``Args:`` into the spec, and its UI shows them."""
    for name, (pipe, _) in specs.items():
        params = pipe["root"]["inputDefinitions"]["parameters"]
        missing = [p for p, spec in params.items() if len(spec.get("description", "")) < 10]
        assert params and not missing, f"{name}: no description for {missing}"
    train = _tasks(specs["end-to-end"][0])["train"]["inputs"]["parameters"]
    # The snapshot's tag and hash and the KFP run reach the training step.
    assert train["data_version"]["taskOutputParameter"] == {"producerTask": "snapshot-2",
                                                            "outputParameterKey": "version"}
    assert train["data_md5"]["taskOutputParameter"]["outputParameterKey"] == "md5"
    assert train["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_training_pipeline_parameters(specs):
    params = specs["training"][0]["root"]["inputDefinitions"]["parameters"]
    assert {"data_version", "model_size", "epochs", "aml", "tokens"} <= set(params)
    assert params["model_size"]["defaultValue"] == "1b"


@pytest.mark.parametrize("name", ["training", "end-to-end"])
def test_scale_out_parameters_reach_the_train_step(specs, name):
    """``nodes`` and ``gpus_per_node`` are UI parameters (default one node, one GPU) that the train step gets, with
    the project image a multi-node TrainJob runs."""
    pipe, _ = specs[name]
    params = pipe["root"]["inputDefinitions"]["parameters"]
    for key in ("nodes", "gpus_per_node"):
        assert params[key]["parameterType"] == "NUMBER_INTEGER" and params[key]["defaultValue"] == 1, key
    inputs = _tasks(pipe)["train"]["inputs"]["parameters"]
    for key in ("nodes", "gpus_per_node"):
        assert inputs[key]["componentInputParameter"].removeprefix("pipelinechannel--") == key
    assert inputs["image"]["runtimeValue"]["constant"] == IMAGE
    # The GPU count the pod asks for is the same parameter, resolved from the task's inputs when the pod is made.
    placeholder = "{{$.inputs.parameters['pipelinechannel--gpus_per_node']}}"
    assert inputs["accelerator_count"]["runtimeValue"]["constant"] == placeholder
    channel = inputs["pipelinechannel--gpus_per_node"]["componentInputParameter"]
    assert channel.removeprefix("pipelinechannel--") == "gpus_per_node"


def test_components_are_thin_calls_into_reviosa():
    files = sorted((ROOT / "components").glob("*.py"))
    files = [f for f in files if f.name != "__init__.py"]
    assert len(files) >= 12
    for path in files:
        tree = ast.parse(path.read_text())
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert len(funcs) == 1, path.name
        func = funcs[0]
        deco = func.decorator_list[0]
        kwargs = {k.arg: k.value for k in deco.keywords}
        assert isinstance(kwargs["install_kfp_package"], ast.Constant) and kwargs["install_kfp_package"].value is False
        assert isinstance(kwargs["base_image"], ast.Name) and kwargs["base_image"].id == "IMAGE"
        body = [n for n in func.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        imports = [n for n in body if isinstance(n, ast.ImportFrom)]
        assert imports and all(n.module.startswith("reviosa.pipelines") for n in imports), path.name
        assert len(body) <= 4, f"{path.name}: a component body only imports and calls reviosa"


def test_components_and_pipelines_are_installed_packages(tmp_path):
    """They import from any folder (no checkout on the path), and nothing in reviosa/ edits sys.path to find them."""
    import subprocess
    import sys

    code = "import pipelines.end_to_end, components.train, components; print(components.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).resolve() == (ROOT / "components" / "__init__.py").resolve()
    for path in (ROOT / "reviosa").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} touches sys.path")


def test_cli_rejects_unknown_pipeline_and_bad_params(tmp_path):
    res = CliRunner().invoke(app, ["pipeline", "compile", "--out", str(tmp_path), "--name", "nope"])
    assert res.exit_code != 0 and "unknown pipeline 'nope'" in res.output
    res = CliRunner().invoke(app, ["pipeline", "run-local", "--pipeline", "evaluation", "--param", "oops"])
    assert res.exit_code != 0 and "not key=value" in res.output


def test_inference_service_and_status_record(tmp_path):
    isvc = steps.inference_service("reviosa", "s3://models/reviosa/3", IMAGE, gpus=1,
                                   annotations={"reviosa.io/model-version": "3"})
    assert isvc["metadata"]["annotations"] == {"reviosa.io/model-version": "3",
                                               "serving.kserve.io/deploymentMode": "Standard"}
    pred = isvc["spec"]["predictor"]
    container = pred["containers"][0]
    assert container["name"] == "kserve-container"
    assert {"name": "STORAGE_URI", "value": "s3://models/reviosa/3"} in container["env"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pred["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "--host" in container["args"] and "/mnt/models" in container["args"]
    # the server answers its own Service's Host headers (the args parse with the real command)
    import typer

    from reviosa.cli.serve import serve_config

    cmd = typer.main.get_command(app).commands["serve"]
    other = steps.inference_service("other", "s3://m", IMAGE, gpus=0, namespace="team")["spec"]["predictor"]
    served = serve_config(**cmd.make_context("serve", list(other["containers"][0]["args"][1:])).params)
    assert "other-predictor.team.svc.cluster.local" in served.allowed_hosts
    assert "nvidia.com/gpu" not in steps.inference_service("r", "s3://m", IMAGE, gpus=0)["spec"]["predictor"][
        "containers"][0]["resources"]["limits"]
    assert steps.storage_uri("minio://mlpipeline/v2/artifacts/x/model") == "s3://mlpipeline/v2/artifacts/x/model"
    rec = steps.record_status("FAILED", "job-1", "train", 3, "out of memory", str(tmp_path / "status.json"))
    assert json.loads((tmp_path / "status.json").read_text()) == rec
    assert rec["state"] == "FAILED" and rec["error"] == "out of memory"


def test_ui_switches_reach_the_training_config(tmp_path):
    from reviosa.train.recipes.finetune import total_steps

    split = tmp_path / "split"
    stats = steps.synth_split(str(split), 2, seed=0, split="train", overrides=["frames=6", "height=48", "width=48"])

    def cfg(*switches, extra=()):
        return steps.train_config(str(split), "", str(tmp_path / "w"), "tiny",
                                  steps.train_switches(*switches) + list(extra))

    full, ablated = cfg(2.0, True, True), cfg(2.0, False, False)
    assert not full.model.shared_seg_token and ablated.model.shared_seg_token
    assert ablated.model.loss.aml_heads == [] and full.model.loss.aml_heads == [(2, 1), (2, 3)]
    assert cfg(2.0, False, True).model.loss.aml_heads == [] and not cfg(2.0, False, True).model.shared_seg_token
    assert cfg(2.0, True, False).model.loss.aml_heads and cfg(2.0, True, False).model.shared_seg_token
    assert full.data.train == str(split) and full.data.val is None and full.out == str(tmp_path / "w")
    per_step = full.batch_size * full.grad_accum  # tiny: one item per expression (data.unit), one process
    assert full.data.unit == "expression"
    assert total_steps(full, stats["expressions"], 1) == -(-2 * stats["expressions"] // per_step)  # rounded up
    assert total_steps(cfg(0.0, True, True, extra=["steps=7"]), stats["expressions"], 1) == 7
    assert not full.tracking.enabled and cfg(0.0, True, True, "http://mlflow:5000").tracking.uri == "http://mlflow:5000"


@pytest.mark.slow
def test_evaluation_pipeline_runs_with_kfp_local(tmp_path):
    from reviosa.data.format import InterRVOSDataset
    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel

    torch.manual_seed(0)
    ckpt = ReviosaModel.from_config(ModelConfig.from_yaml("tiny")).save_pretrained(tmp_path / "ckpt")
    split = tmp_path / "split"
    # seed 1: its two videos hold a directed interaction, so Actor/Target are scored
    stats = steps.synth_split(str(split), 2, seed=1, split="val", overrides=["frames=6", "height=48", "width=48"])
    root = tmp_path / "kfp"
    res = CliRunner().invoke(app, ["pipeline", "run-local", "--pipeline", "evaluation", "--root", str(root),
                                   "--param", f"model_source={ckpt}", "--param", f"split_source={split}"])
    assert res.exit_code == 0, res.output
    run = next(root.glob("reviosa-evaluation-*"))
    ds = InterRVOSDataset.load(split)
    preds = run / "predict" / "predictions"
    for video, exp in ds.iter_expressions():
        track = preds / video.name / exp.exp_id / "actor"
        assert sorted(p.stem for p in track.glob("*.png")) == sorted(video.frames)
    metrics = json.loads((run / "evaluate" / "executor_output.json").read_text())
    logged = metrics["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {"actor_J", "actor_F", "actor_JF", "rvos_JF"} <= set(logged)
    assert all(0.0 <= v <= 1.0 for v in logged.values())
    html = (run / "evaluate" / "report").read_text()
    assert "InterRVOS evaluation" in html and "Actor" in html
    scores = json.loads((run / "evaluate" / "scores" / "results.json").read_text())
    assert scores["counts"]["expressions"] == stats["expressions"] == len(scores["per_expression"])
    # The random model writes no target track: those roles are scored as missing, never silently skipped.
    assert scores["counts"]["missing_roles"] == sum(1 for m in scores["missing"] if m["role"] == "target")


def test_snapshot_step_clones_a_remote_data_repo_and_pushes_the_tag(tmp_path, s3_storage, monkeypatch):
    import subprocess

    from reviosa.storage.dataversions import DataRepo

    def git(*args, cwd=tmp_path):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git("init", "--quiet", "--bare", str(origin))
    git("clone", "--quiet", str(origin), str(work))
    for key, value in (("user.email", "t@reviosa.invalid"), ("user.name", "t")):
        git("config", key, value, cwd=work)
    (work / "README.md").write_text("data\n")
    git("add", "README.md", cwd=work)
    git("commit", "--quiet", "-m", "init", cwd=work)
    DataRepo(work, s3_storage).init()
    git("push", "--quiet", "origin", "HEAD", cwd=work)
    cfg = tmp_path / "storage.yaml"
    cfg.write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(cfg))
    split = tmp_path / "split"
    steps.synth_split(str(split), 1, seed=1, split="val", overrides=["frames=6", "height=48", "width=48"])

    first = steps.snapshot(str(split), f"file://{origin}", "val", "pipeline: val split")
    again = steps.snapshot(str(split), f"file://{origin}", "val", "pipeline: same val split")
    assert first["version"] == again["version"] == "data-v1"  # a rerun on identical data reuses the version
    tags = subprocess.run(["git", "-C", str(origin), "tag", "--list"], capture_output=True, text=True).stdout
    assert tags.split() == ["data-v1"]
    log = subprocess.run(["git", "-C", str(origin), "log", "--format=%s", "-1", "data-v1"], capture_output=True,
                         text=True).stdout
    assert log.strip() == "pipeline: val split"
    # The training pipeline's fetch step reads that version back from git + S3.
    stats = steps.fetch_split("data-v1", str(tmp_path / "fetched"), repo=f"file://{origin}", path="data/val")
    # It says which version it read: what the training run then records as its dataset.
    assert {k: stats.pop(k) for k in ("data_version", "data_md5", "data_repo", "data_path")} == {
        "data_version": "data-v1", "data_md5": first["md5"], "data_repo": f"file://{origin}", "data_path": "data/val"}
    assert stats == steps.fetch_split(str(split), str(tmp_path / "copy"))
    assert steps.lineage_overrides({"data_version": "data-v1", "data_md5": first["md5"], "data_path": "data/val"},
                                   kfp_run_id="123") == [
        f'tracking.data={{"version": "data-v1", "md5": "{first["md5"]}", "repo": "", "path": "data/val"}}',
        'tracking.tags={"reviosa.kfp.run_id": "123"}']
