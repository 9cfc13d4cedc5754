"""Multi-node training through Kubeflow Trainer: the train step's TrainJob launcher creates, follows, streams and
fails jobs, and a two-node train step collects its model from S3.

No cluster runs here. The launcher talks through the official ``kubernetes`` client to ``fixtures.kube_api.KubeApi``,
a local HTTP server that speaks the Kubernetes REST wire format for the paths it uses (TrainJobs, pod lists, pod
logs) and plays Trainer's controller as each test scripts it. What a real API server, Trainer and JobSet do beyond
those paths is not checked.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from fixtures.kube_api import KubeApi

from reviosa.pipelines.trainjob import TrainJobFailed, TrainJobs, job_name, state, trainjob_manifest

ROOT = Path(__file__).resolve().parents[1]
NS = "reviosa"
IMAGE = "ghcr.io/reviosa/reviosa:0.1.0@sha256:" + "a" * 64


@pytest.fixture
def api():
    double = KubeApi().start()
    try:
        yield double
    finally:
        double.stop()


def launcher(api: KubeApi, lines: list[str], **kw) -> TrainJobs:
    return TrainJobs(api.api_client(), NS, log=lines.append, poll_s=0.02, **kw)


def job(name: str = "reviosa-train-000000000001", nodes: int = 2, gpus: int = 4) -> dict:
    return trainjob_manifest(name, NS, IMAGE, nodes, gpus, f"s3://reviosa/runs/{name}/train_config.yaml")


def in_background(fn):
    """Run the controller script ``fn`` in a thread (the API answers the create first)."""
    return lambda obj: threading.Thread(target=fn, args=(obj,), daemon=True).start()


def test_create_follow_and_complete(api):
    def controller(obj):
        name = obj["metadata"]["name"]
        time.sleep(0.1)
        leader, worker = api.add_pod(NS, name, 0), api.add_pod(NS, name, 1)
        api.log(NS, worker, "worker line that is not streamed")
        for step in range(1, 4):
            api.log(NS, leader, f"step {step}/3 loss {1.0 / step:.4f}")
            time.sleep(0.05)
        api.end_pod(NS, worker)
        api.end_pod(NS, leader)
        api.condition(NS, name, "Complete", reason="JobSetCompleted", message="jobset completed")

    api.on_create = in_background(controller)
    lines: list[str] = []
    jobs = launcher(api, lines)
    sent = job()
    jobs.create(sent)
    done = jobs.wait(sent["metadata"]["name"], timeout_s=30)
    assert state(done) == "Complete"
    assert api.created == [sent]  # exactly the rendered TrainJob went over the wire, once
    streamed = [ln.split("] ", 1)[1] for ln in lines if ln.startswith(f"[{sent['metadata']['name']}-node-0-0")]
    assert streamed == ["step 1/3 loss 1.0000", "step 2/3 loss 0.5000", "step 3/3 loss 0.3333"]
    assert not any("worker line" in ln for ln in lines)  # only rank 0's log goes to the step's log
    assert lines[0].startswith("created TrainJob reviosa/") and lines[-1].endswith("completed")
    methods = {(m, p.split("?")[0].rsplit("/", 1)[-1]) for m, p in api.requests}
    assert ("POST", "trainjobs") in methods and ("GET", "log") in methods
    assert any("follow=true" in p.lower() for _, p in api.requests)


def test_a_failed_job_fails_the_step_with_the_failing_pods_last_lines(api):
    def controller(obj):
        name = obj["metadata"]["name"]
        leader, worker = api.add_pod(NS, name, 0), api.add_pod(NS, name, 1)
        api.log(NS, leader, "step 1/10 loss 0.9")
        api.log(NS, worker, *[f"noise {i}" for i in range(100)], "Traceback (most recent call last):",
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        api.end_pod(NS, worker, exit_code=1)
        api.end_pod(NS, leader, exit_code=1)
        api.condition(NS, name, "Failed", reason="FailedJobs", message="jobset failed: node-0 exceeded backoffLimit")

    api.on_create = in_background(controller)
    lines: list[str] = []
    jobs = launcher(api, lines)
    sent = job()
    jobs.create(sent)
    with pytest.raises(TrainJobFailed, match="failed: FailedJobs: jobset failed: node-0 exceeded backoffLimit"):
        jobs.wait(sent["metadata"]["name"], timeout_s=30)
    text = "\n".join(lines)
    assert "step 1/10 loss 0.9" in text and "CUDA out of memory" in text
    assert "noise 50" not in text and "noise 99" in text  # the tail of the failed worker, not its whole log


def test_a_retried_step_follows_a_running_job_and_replaces_a_failed_one(api):
    lines: list[str] = []
    jobs = launcher(api, lines)
    running = api.put_trainjob(job("reviosa-train-00000000000a"))
    assert jobs.create(job("reviosa-train-00000000000a"))["metadata"]["uid"] == running["metadata"]["uid"]
    assert api.created == []  # nothing new was started
    failed = api.put_trainjob(job("reviosa-train-00000000000b"))
    api.add_pod(NS, "reviosa-train-00000000000b", 0, phase="Failed")
    api.condition(NS, "reviosa-train-00000000000b", "Failed", reason="FailedJobs", message="out of memory")
    again = jobs.create(job("reviosa-train-00000000000b"))
    assert again["metadata"]["uid"] != failed["metadata"]["uid"] and state(again) == "Running"
    deleted = [p for m, p in api.requests if m == "DELETE"]
    assert [p.split("?")[0] for p in deleted] == [
        f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs/reviosa-train-00000000000b"]
    assert "propagationPolicy=Foreground" in deleted[0]  # its pods go with it
    assert not api.pods  # the old job's pods went with it
    assert any("replacing it" in ln for ln in lines)


def test_pods_the_gpu_pool_cannot_fit_fail_the_step(api):
    api.on_create = lambda obj: api.add_pod(NS, obj["metadata"]["name"], 0, phase="Pending", scheduled=False)
    lines: list[str] = []
    jobs = launcher(api, lines, schedule_timeout_s=0.2)
    sent = job()
    jobs.create(sent)
    with pytest.raises(TrainJobFailed, match=r"Insufficient nvidia.com/gpu.*cannot fit 2 nodes x 4 GPUs"):
        jobs.wait(sent["metadata"]["name"], timeout_s=30)


def test_a_wrong_token_or_a_missing_job_is_an_api_error(api):
    from kubernetes.client.rest import ApiException

    client = api.api_client()
    client.configuration.api_key = {"authorization": "wrong"}
    with pytest.raises(ApiException) as err:
        TrainJobs(client, NS, log=lambda _: None).create(job())
    assert err.value.status == 401
    jobs = launcher(api, [])
    assert jobs.get("reviosa-train-absent") is None
    with pytest.raises(TrainJobFailed, match="disappeared"):
        jobs.wait("reviosa-train-absent", timeout_s=5)


def test_two_node_train_step_runs_a_trainjob_and_collects_its_model(api, s3_storage, tmp_path, monkeypatch):
    """``steps.train(nodes=2)``: splits and config to S3, the TrainJob through the kubeconfig's API server, the
    final model from S3 into the artefact path (what Trainer's pods would have published)."""
    import jsonschema
    from test_manifests import TRAINER_CRDS, strict_schema

    from reviosa.pipelines import steps
    from reviosa.train.config import TrainConfig

    cfg_file = tmp_path / "storage.yaml"
    cfg_file.write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(cfg_file))
    monkeypatch.setenv("REVIOSA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    split = tmp_path / "train"
    steps.synth_split(str(split), 1, seed=0, split="train", overrides=["frames=6", "height=48", "width=48"])
    fs, bucket = s3_storage.s3fs(), s3_storage.bucket
    seen: dict = {}

    def controller(obj):  # what the job's pods leave in the shared folder, checked against what they were given
        name = obj["metadata"]["name"]
        config_uri = obj["spec"]["trainer"]["args"][obj["spec"]["trainer"]["args"].index("--config") + 1]
        run = f"{bucket}/runs/{name}"
        assert config_uri == f"s3://{run}/train_config.yaml"
        seen["config"] = TrainConfig.from_dict(yaml.safe_load(fs.cat_file(config_uri[5:])), source=config_uri)
        seen["data"] = sorted(k.rsplit("/", 1)[-1] for k in fs.find(f"{run}/data/train"))
        fs.pipe({f"{run}/final/config.yaml": b"name: tiny\n", f"{run}/final/reviosa.safetensors": b"weights",
                 f"{run}/summary.json": json.dumps({"step": 7, "losses": {"loss": 0.5}}).encode()})
        leader = api.add_pod(NS, name, 0)
        api.log(NS, leader, "step 7/7 loss 0.5000")
        api.end_pod(NS, leader)
        api.condition(NS, name, "Complete", reason="JobSetCompleted")

    api.on_create = controller
    model = tmp_path / "model"
    meta = steps.train(str(split), "", str(model), str(tmp_path / "work"), "tiny", ["steps=7"], nodes=2,
                       gpus_per_node=4, image=IMAGE, namespace=NS)
    name = job_name(str(model))
    assert meta["steps"] == 7 and meta["nodes"] == 2 and meta["gpus_per_node"] == 4 and meta["trainjob"] == name
    assert (model / "reviosa.safetensors").read_bytes() == b"weights" and (model / "config.yaml").is_file()
    # The pods train the caller's config, on splits and with checkpoints in the job's S3 folder.
    cfg, run = seen["config"], f"s3://{bucket}/runs/{name}"
    assert cfg.steps == 7 and cfg.data.train == f"{run}/data/train" and cfg.data.val is None
    assert cfg.checkpoint.dir == f"{run}/checkpoints" and cfg.publish == run and cfg.out.startswith("/tmp/")
    assert "meta_expressions.json" in seen["data"] and "mask_dict.json" in seen["data"]
    (sent,) = api.created
    trainer = sent["spec"]["trainer"]
    assert (sent["metadata"]["name"], sent["metadata"]["namespace"]) == (name, NS)
    assert trainer["image"] == IMAGE and (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    assert trainer["command"][:3] == ["python", "-m", "torch.distributed.run"] and "--resume" in trainer["args"]
    assert {e["name"] for e in trainer["env"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                   "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    crd = next(d for d in yaml.load_all(TRAINER_CRDS["TrainJob"].read_text(), Loader=yaml.CSafeLoader) if d)
    schema = strict_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    assert list(jsonschema.Draft7Validator(schema).iter_errors(sent)) == []
    # A tag instead of a digest is refused before anything is created (the admission policy would refuse it).
    with pytest.raises(ValueError, match="pinned by digest"):
        steps.train(str(split), "", str(tmp_path / "m2"), str(tmp_path / "w2"), "tiny", [], nodes=2,
                    image="ghcr.io/reviosa/reviosa:0.1.0")
