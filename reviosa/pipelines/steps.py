"""What each pipeline step does, as plain functions over local paths (KFP artefact paths or folders).

The components in ``components/`` only unpack their artefacts and call one of these, so every step runs (and is
tested) without Kubeflow too. Each returns a small JSON-ready dict that becomes artefact metadata or metrics.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _split_stats(path: str | os.PathLike) -> dict[str, Any]:
    from reviosa.data.format import InterRVOSDataset

    return {k: v for k, v in InterRVOSDataset.load(path).stats().items() if isinstance(v, (int, float, str))}


def synth_split(out: str, videos: int, seed: int = 0, split: str = "", config: str = "default",
                overrides: Sequence[str] = ()) -> dict:
    """A synthetic interaction split (``reviosa data synth``) of world ``config`` + ``overrides``."""
    from reviosa.data.synthetic.config import SyntheticConfig
    from reviosa.data.synthetic.writer import generate_split

    generate_split(out, SyntheticConfig.from_yaml(config, overrides), videos, seed, split=split, progress=False)
    return _split_stats(out)


def fetch_split(source: str, out: str, repo: str = "", path: str = "") -> dict:
    """Copy a split into ``out``: with ``repo``, ``path`` (default ``data``) at DVC version ``source`` (a git
    rev such as ``data-v3``), whose tag, hash, repository and path join the counts (what the training step records);
    otherwise ``source[/path]`` as an ``s3://`` prefix or a folder."""
    out_p = Path(out)
    if repo:
        from reviosa.storage.config import load_storage_config
        from reviosa.storage.dataversions import fetch_version

        _, md5 = fetch_version(repo, source, out_p, load_storage_config(), path=path or "data")
        return {**_split_stats(out_p), "data_version": source, "data_md5": md5, "data_repo": repo,
                "data_path": path or "data"}
    src = source.rstrip("/") + (f"/{path.strip('/')}" if path else "")
    if src.startswith("s3://"):
        from reviosa.storage.fetch import download

        download(src, out_p)
    else:
        if not Path(src).is_dir():
            raise FileNotFoundError(f"split folder {src} does not exist")
        shutil.copytree(src, out_p, dirs_exist_ok=True)
    return _split_stats(out_p)


def fetch_model(source: str, out: str) -> dict:
    """Copy a ``save_pretrained`` checkpoint (folder or ``s3://``) into ``out`` after checking it loads as one."""
    import yaml

    from reviosa.model.checkpoint import CONFIG_FILE, TRAINABLE_FILE, fetch
    from reviosa.model.errors import CheckpointError

    src = fetch(source)
    if not (src / CONFIG_FILE).is_file() or not (src / TRAINABLE_FILE).is_file():
        raise CheckpointError(f"{source}: not a ReVIOSa checkpoint (needs {CONFIG_FILE} and {TRAINABLE_FILE})")
    shutil.copytree(src, out, dirs_exist_ok=True)
    cfg = yaml.safe_load((src / CONFIG_FILE).read_text()) or {}
    return {"source": source, "config_name": str(cfg.get("name", ""))}


def extract_clips(videos: str, out: str, config: str = "paper", overrides: Sequence[str] = ()) -> dict:
    """Cut every video file of a folder into clips of JPEG frames (resumable per clip)."""
    from reviosa.data.clips import ClipConfig
    from reviosa.data.clips import extract_clips as extract

    cfg = ClipConfig.from_yaml(config, overrides)
    files = sorted(p for p in Path(videos).iterdir() if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".avi", ".mov"))
    if not files:
        raise FileNotFoundError(f"no video files (.mp4, .mkv, .webm, .avi, .mov) in {videos}")
    clips = {}
    for f in files:
        clips.update(extract(f, out, cfg))
    return {"videos": len(files), "clips": len(clips), "frames": sum(len(v) for v in clips.values())}


def mask_tracks(split: str) -> dict:
    """Check that every object of the split has a usable mask track (annotation stage 0's precondition)."""
    from reviosa.annotate.track_check import check_tracks
    from reviosa.data.format import InterRVOSDataset

    ds = InterRVOSDataset.load(split)
    check_tracks(ds)
    return {"videos": len(ds.videos), "objects": sum(len(v.objects) for v in ds.videos.values())}


def annotate_switches(backend: str = "", base_url: str = "", model: str = "") -> list[str]:
    """The overrides behind the annotation pipeline's UI parameters; an empty one keeps the config's value."""
    given = {"backend": backend, "base_url": base_url, "model": model}
    return [f"{key}={json.dumps(value)}" for key, value in given.items() if value]


def annotate(split: str, out: str, config: str = "default", overrides: Sequence[str] = ()) -> dict:
    """Annotation stages 1-4 (scene graph → role-aware expressions) from one split into ``out``, with AnnotateConfig
    ``config`` (a shipped name or path) and ``overrides``."""
    from reviosa.annotate.config import AnnotateConfig
    from reviosa.annotate.pipeline import run_annotation

    report = run_annotation(split, out, AnnotateConfig.from_yaml(config, overrides), progress=False)
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str))}


def snapshot(split: str, repo: str, name: str, message: str) -> dict:
    """Put the split at ``data/<name>`` of a git+DVC repository and version it (``dvc push`` + tag ``data-vN``).

    ``repo`` is a local checkout, or a git URL: then it is cloned, and the commit and tag are pushed back.
    """
    import subprocess
    import tempfile

    if "://" in repo or repo.startswith("git@"):
        # A pod has no git identity; the tag message and the run's records say which pipeline made the commit.
        for var, value in (("GIT_AUTHOR_NAME", "reviosa pipeline"), ("GIT_COMMITTER_NAME", "reviosa pipeline"),
                           ("GIT_AUTHOR_EMAIL", "pipeline@reviosa.invalid"),
                           ("GIT_COMMITTER_EMAIL", "pipeline@reviosa.invalid")):
            os.environ.setdefault(var, value)
        with tempfile.TemporaryDirectory(prefix="reviosa-data-repo-") as tmp:
            subprocess.run(["git", "clone", "--quiet", repo, tmp], check=True)
            out = snapshot(split, tmp, name, message)
            subprocess.run(["git", "-C", tmp, "push", "--quiet", "--follow-tags", "origin", "HEAD"], check=True)
            return out
    from reviosa.storage.config import load_storage_config
    from reviosa.storage.dataversions import DataRepo
    from reviosa.storage.errors import DataVersionError

    data = DataRepo(repo, load_storage_config())
    dest = data.root / data.data_dir / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(split, dest)
    try:
        ver = data.snapshot(message)
    except DataVersionError as err:
        # A rerun (or a retry after the tag was written) with identical data: that version already exists.
        if "unchanged since" not in str(err) or not data.tags():
            raise
        ver = data.version(data.tags()[-1][1])
    return {"version": ver.tag, "md5": ver.md5}


def lineage_overrides(split_metadata: dict | None = None, data_version: str = "", data_md5: str = "",
                      data_repo: str = "", data_path: str = "", kfp_run_id: str = "",
                      kfp_run_name: str = "") -> list[str]:
    """The overrides that make a training run record where it comes from: the DVC version the pipeline snapshotted
    (else the one its fetch step read, in ``split_metadata``) and the KFP run."""
    from reviosa.tracking.naming import TAG_KFP_RUN_ID, TAG_KFP_RUN_NAME

    meta = dict(split_metadata or {})
    out = []
    if version := data_version or meta.get("data_version", ""):
        ref = {"version": version, "md5": data_md5 or meta.get("data_md5") or None,
               "repo": data_repo or meta.get("data_repo", ""), "path": data_path or meta.get("data_path", "")}
        out.append(f"tracking.data={json.dumps(ref)}")
    if tags := {k: v for k, v in ((TAG_KFP_RUN_ID, kfp_run_id), (TAG_KFP_RUN_NAME, kfp_run_name)) if v}:
        out.append(f"tracking.tags={json.dumps(tags)}")
    return out


def train_switches(epochs: float = 0.0, aml: bool = True, tokens: bool = True, tracking_uri: str = "") -> list[str]:
    """The overrides behind a pipeline's UI switches: length in epochs (0: the config's own length), the Table-4 row
    that AML on/off and two tokens on/off pick, and MLflow tracking (off without a server URI)."""
    from reviosa.train.ablation import overrides as ablation_overrides

    out = [f"epochs={json.dumps(epochs)}"] if epochs else []
    out += ablation_overrides(aml=aml, tokens=tokens)
    out += [f"tracking.uri={json.dumps(tracking_uri)}", "tracking.enabled=true"] if tracking_uri \
        else ["tracking.enabled=false"]
    return out


def train_config(train_split: str, val_split: str, work: str, config: str = "tiny", overrides: Sequence[str] = ()):
    """The ``TrainConfig`` of a pipeline run: ``config`` + ``overrides``, placed on these splits and in ``work``
    (validation is the pipeline's own evaluate step)."""
    from reviosa.train.config import TrainConfig

    place = [f"data.train={json.dumps(train_split)}", f"data.val={json.dumps(val_split or None)}",
             f"out={json.dumps(work)}", "validation.every=0"]
    return TrainConfig.from_yaml(config, [*overrides, *place])


def train(train_split: str, val_split: str, model_out: str, work: str, config: str = "tiny",
          overrides: Sequence[str] = (), nodes: int = 1, gpus_per_node: int = 1, image: str = "",
          namespace: str = "reviosa") -> dict:
    """Train config ``config`` + ``overrides`` on these splits (resuming from ``work`` if a previous attempt left
    checkpoints there); the final model goes to ``model_out``.

    One node trains in this process, or under torchrun with ``gpus_per_node`` processes; ``nodes > 1`` becomes a
    Kubeflow Trainer TrainJob with the project ``image`` in ``namespace`` (:mod:`reviosa.pipelines.trainjob`).
    """
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError(f"nodes and gpus_per_node must be at least 1, got {nodes} and {gpus_per_node}")
    cfg = train_config(train_split, val_split, work, config, overrides)
    if nodes > 1:
        from reviosa.pipelines.trainjob import job_name, run_multinode

        name = job_name(os.path.abspath(model_out))
        summary = run_multinode(cfg, model_out, nodes=nodes, gpus_per_node=gpus_per_node, image=image,
                                namespace=namespace, name=name)
        return {"steps": summary["step"], "nodes": nodes, "gpus_per_node": gpus_per_node, "trainjob": name,
                **_tracked(summary)}
    resume = cfg.checkpoint.dir is not None or (Path(work) / "checkpoints").is_dir()
    if gpus_per_node > 1:
        summary = _torchrun(cfg, gpus_per_node, resume)
    else:
        from reviosa.train.recipes.finetune import run

        summary = run(cfg, resume=resume, progress=False)
    shutil.copytree(summary["final"], model_out, dirs_exist_ok=True)
    return {"steps": summary["step"], **{k: v for k, v in summary.items() if isinstance(v, (int, float))},
            **_tracked(summary)}


def _tracked(summary: dict) -> dict[str, str]:
    """The MLflow run and logged model of a training summary: the register step registers that model."""
    model = str(summary.get("model_uri") or "")
    return {"mlflow_run_id": str(summary.get("run_id") or ""),
            "mlflow_model_id": model.removeprefix("models:/") if model.startswith("models:/") else ""}


def _torchrun(cfg, gpus: int, resume: bool) -> dict:
    """Run the fine-tuning entry point under torchrun with ``gpus`` processes on this node; its summary."""
    import subprocess
    import sys

    from reviosa.data.atomic import atomic_write_text

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "launch_config.yaml"
    atomic_write_text(resolved, cfg.to_yaml())
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
            "-m", "reviosa.train", "--config", str(resolved), "--no-progress", *(["--resume"] if resume else [])]
    # Its output is the step's log; a failed rank fails torchrun and so the step.
    subprocess.run(argv, check=True)
    return json.loads((out / "summary.json").read_text())


def predict_split(model_uri: str, split: str, out: str, max_videos: int = 0, device: str = "auto",
                  fmt: str = "png") -> dict:
    """Run a checkpoint on every expression of a split into the prediction layout (resumes per expression);
    ``fmt="official"`` writes ``<out>/results.json`` instead (resumes per video)."""
    import torch
    from tqdm import tqdm

    from reviosa.data.format import InterRVOSDataset
    from reviosa.evaluate.official import OfficialPredictions, results_entry, results_path, write_results
    from reviosa.evaluate.predictions import role_dir, write_track
    from reviosa.model.inference import predict_video
    from reviosa.model.modeling import ReviosaModel

    if fmt not in ("png", "official"):
        raise ValueError(f"prediction format must be png or official, got {fmt!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ds = InterRVOSDataset.load(split)
    net = ReviosaModel.from_pretrained(model_uri, device=device)
    videos = list(ds.videos.values())[: max_videos or None]
    have = OfficialPredictions(results_path(out)).results if fmt == "official" and results_path(out).is_file() else {}
    done = 0
    for video in tqdm(videos, desc="predict", unit="video"):
        frames, entries = None, []
        for exp in video.expressions.values():
            if fmt == "official":
                if exp.exp_id in have.get(video.name, {}):
                    continue
            elif role_dir(out, video.name, exp.exp_id, "actor").is_dir():
                continue
            frames = ds.read_frames(video) if frames is None else frames
            pred = predict_video(net, frames, exp.text)
            done += 1
            if fmt == "official":
                entries.append(results_entry(done - 1, video.name, exp.exp_id, exp.text, video.frames, pred.actor,
                                             pred.target, pred.text))
                continue
            if pred.target is not None:
                write_track(out, video.name, exp.exp_id, "target", video.frames, pred.target)
            # The actor folder is written last: its presence marks the expression as done.
            write_track(out, video.name, exp.exp_id, "actor", video.frames, pred.actor)
        if entries:
            write_results(out, entries, merge=True)
    return {"videos": len(videos), "expressions": done}


def evaluate(split: str, predictions: str, out: str) -> tuple[dict[str, float], str]:
    """InterRVOS protocol scores (Actor/Target/RVOS J, F, J&F) plus an HTML report; returns (summary, html)."""
    from reviosa.data.format import InterRVOSDataset
    from reviosa.evaluate.predictions import answer_form_accuracy
    from reviosa.evaluate.protocol import evaluate_split, protocol_note
    from reviosa.evaluate.report import format_table, write_outputs

    ds = InterRVOSDataset.load(split)
    result = evaluate_split(ds, predictions)
    paths = write_outputs(result, out)
    summary = {k: float(v) for k, v in result.summary.items() if v is not None and math.isfinite(v)}
    form = answer_form_accuracy(ds, predictions)
    if form is not None:
        summary["answer_form_acc"] = form
    table = format_table(result) + ("" if form is None else f"\nanswer form (a target track exactly when the "
                                                            f"expression has a target): {100 * form:.1f} %")
    html = ("<html><body><h2>InterRVOS evaluation</h2><pre>" + _escape(table) + "</pre><p>"
            + _escape(protocol_note(result)) + "</p><p>files: " + ", ".join(p.name for p in paths.values())
            + "</p></body></html>")
    return summary, html


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def register(model_dir: str, metrics: dict[str, float], name: str, tracking_uri: str, data_version: str = "",
             model_meta: dict | None = None, data_md5: str = "", data_repo: str = "", data_path: str = "",
             kfp_run_id: str = "", kfp_run_name: str = "") -> dict:
    """Register the model the training run logged (``model_meta``: the train step's metadata) as ``name@candidate``:
    its scores become an evaluation run on the split at ``data_version`` (the model's metrics too), and the version's
    tags and description carry the data version, scores, code commit, KFP run and both runs."""
    from mlflow import MlflowClient

    from reviosa.tracking.context import DataRef
    from reviosa.tracking.evaluation import log_evaluation
    from reviosa.tracking.naming import TAG_KFP_RUN_ID, TAG_KFP_RUN_NAME, TAG_TRAIN_RUN
    from reviosa.tracking.registry import register_model, version_description, version_tags

    meta = dict(model_meta or {})
    model_id, run_id = meta.get("mlflow_model_id"), meta.get("mlflow_run_id")
    if not model_id or not run_id:
        raise RuntimeError(f"{model_dir}: the train step logged no model to MLflow (its metadata has no "
                           "mlflow_model_id); it needs the same tracking_uri as this step")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(run_id)
    kfp = {k: v for k, v in ((TAG_KFP_RUN_ID, kfp_run_id), (TAG_KFP_RUN_NAME, kfp_run_name)) if v}
    scored_on = DataRef(version=data_version or None, md5=data_md5 or None, repo=data_repo,
                        path=data_path or "data/val",
                        note="" if data_version else "the pipeline passed no dataset version")
    eval_run = log_evaluation(metrics, dataset=(Path(scored_on.path).name or "val").lower(), data=scored_on,
                              run_name="eval-" + (run.info.run_name or run_id).removeprefix("train-"),
                              model_id=model_id, tags={**kfp, TAG_TRAIN_RUN: run_id}, tracking_uri=tracking_uri)
    tags = version_tags(run, metrics, eval_run, kfp)
    version = register_model(client, name, model_id, tags=tags,
                             description=version_description(run, tags, tracking_uri))
    return {"name": name, "version": str(version.version), "run_id": run_id, "eval_run_id": eval_run,
            "model_id": model_id, "source": version.source}


def inference_service(name: str, storage_uri: str, image: str, gpus: int = 1, namespace: str = "reviosa",
                      annotations: dict[str, str] | None = None) -> dict:
    """The KServe ``InferenceService`` serving ``storage_uri`` with the project image (``reviosa serve``);
    ``annotations`` name the registered model version it serves."""
    from reviosa.serve.config import cluster_hosts

    resources = {"requests": {"cpu": "2", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "24Gi"}}
    # Pod Security "restricted" (the namespace enforces it) and the runner's admission policy (`reviosa serve`, the
    # predictor's service account, no other Secret) admit exactly this shape; manifests/base/serving has the same.
    predictor: dict[str, Any] = {
        "serviceAccountName": "reviosa-predictor", "minReplicas": 1,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [{
            "name": "kserve-container", "image": image, "command": ["reviosa"],
            # Host headers of this InferenceService's own Service (the server's default names the shipped one).
            "args": ["serve", "--host", "0.0.0.0", "--port", "8080", "--model", "/mnt/models", "--name", name,
                     "--device", "cuda" if gpus else "cpu",
                     *[a for h in cluster_hosts(name, namespace) for a in ("--allow-host", h)]],
            # The storage initializer runs only when the container has STORAGE_URI; files land in /mnt/models.
            "env": [{"name": "STORAGE_URI", "value": storage_uri}, {"name": "HOME", "value": "/tmp"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": f"/v2/models/{name}/ready", "port": 8080}},
            "startupProbe": {"httpGet": {"path": f"/v2/models/{name}/ready", "port": 8080},
                             "failureThreshold": 60, "periodSeconds": 10},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "resources": resources,
        }]}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        predictor["nodeSelector"] = {"reviosa.io/pool": "gpu"}
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": {**(annotations or {}), "serving.kserve.io/deploymentMode": "Standard"}},
            "spec": {"predictor": predictor}}


def deploy(name: str, storage_uri: str, image: str, gpus: int, namespace: str, apply: bool, out: str,
           model_version: str = "", tracking_uri: str = "") -> dict:
    """Write the InferenceService manifest and, with ``apply``, create or replace it in the cluster; with
    ``model_version`` (of registered model ``name``) its annotations name that version and, once applied, the
    version's MLflow tags name the InferenceService."""
    import yaml

    from reviosa.data.atomic import atomic_write_text

    annotations, tracking = {}, None
    if model_version and tracking_uri:
        from mlflow import MlflowClient

        from reviosa.tracking.registry import deployment_annotations

        tracking = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        annotations = deployment_annotations(tracking, name, model_version)
    isvc = inference_service(name, storage_uri, image, gpus, namespace, annotations)
    atomic_write_text(out, yaml.safe_dump(isvc, sort_keys=False))
    if not apply:
        return {"applied": 0, "name": name}
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    config.load_incluster_config() if os.environ.get("KUBERNETES_SERVICE_HOST") else config.load_kube_config()
    api = client.CustomObjectsApi()
    args = ("serving.kserve.io", "v1beta1", namespace, "inferenceservices")
    try:
        current = api.get_namespaced_custom_object(*args, name)
        isvc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.replace_namespaced_custom_object(*args, name, isvc)
    except ApiException as err:
        if err.status != 404:
            raise
        api.create_namespaced_custom_object(*args, isvc)
    if tracking is not None:
        from reviosa.tracking.registry import record_deployment

        record_deployment(tracking, name, model_version, namespace, name)
    return {"applied": 1, "name": name, "model_version": model_version}


def record_status(state: str, job: str, task: str, error_code, error_message: str, out: str) -> dict:
    """Write how a run ended (state, failing task, error) as JSON and log it; exit handlers call this."""
    import logging

    from reviosa.data.atomic import atomic_write_text

    record = {"state": state, "pipeline_job": job, "pipeline_task": task, "error_code": error_code,
              "error": error_message or ""}
    atomic_write_text(out, json.dumps(record, indent=1))
    level = logging.INFO if state == "SUCCEEDED" else logging.ERROR
    logging.getLogger("reviosa.pipelines").log(level, "pipeline %s ended %s %s", job, state, error_message or "")
    return record


def write_text(path: str, text: str) -> None:
    """Atomic text write for artefacts (an HTML report)."""
    from reviosa.data.atomic import atomic_write_text

    atomic_write_text(path, text)


def storage_uri(artifact_uri: str) -> str:
    """The S3 URI KServe's storage initializer understands for a KFP artefact URI (``minio://`` → ``s3://``)."""
    for scheme in ("minio://", "gs://", "s3://"):
        if artifact_uri.startswith(scheme):
            return ("s3://" + artifact_uri[len(scheme):]) if scheme == "minio://" else artifact_uri
    return artifact_uri
