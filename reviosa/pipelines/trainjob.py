"""Multi-node training on Kubeflow Trainer: the ``TrainJob`` a training step creates, and following it to the end.

A pipeline step with ``nodes > 1`` does not train itself. It uploads its splits and the resolved ``TrainConfig`` to
``s3://<bucket>/runs/<job>/``, creates a ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) on the shipped
``TrainingRuntime`` ``reviosa-torch`` (``manifests/overlays/gpu-cloud/training-runtime.yaml``: service account,
volumes, GPU pool node selector and toleration, restart policy), streams the rank-0 node's log into its own log and
waits. The pods run ``python -m torch.distributed.run -m reviosa.train``; Trainer's torch plugin gives torchrun its
``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``.
Checkpoints go to ``runs/<job>/checkpoints`` (``checkpoint.dir``), so a JobSet restart resumes from the last one;
the final model and ``summary.json`` to ``runs/<job>/`` (``publish``), from where the step downloads the model into
its artefact, exactly as a single-pod run leaves it.

The admission policy (``manifests/base/admission``) lets the pipeline runner create only TrainJobs without pod
overrides, with the project image by digest and no Secret but ``reviosa-s3`` and ``reviosa-mlflow-client``:
:func:`trainjob_manifest` renders exactly that shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reviosa.pipelines.resources import GPU_TAINT_KEY, MLFLOW_CLIENT_SECRET, S3_SECRET

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
#: the namespaced TrainingRuntime the gpu-cloud overlay ships (its pods carry everything a TrainJob may not set)
RUNTIME = "reviosa-torch"
RUNTIME_KIND = "TrainingRuntime"
#: replicated job and container name Trainer's torch plugin fills in ("node")
NODE = "node"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: where the pods keep their local run folder (an emptyDir of the runtime)
POD_OUT = "/tmp/reviosa-run"

Log = Callable[[str], None]


class TrainJobFailed(RuntimeError):
    """The TrainJob ended in ``Failed`` (or could not be scheduled); the message says why."""


def _stdout(line: str) -> None:
    print(line, flush=True)


def job_name(seed: str) -> str:
    """A TrainJob name (RFC 1035 label) that is the same for every attempt of one pipeline step."""
    return "reviosa-train-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def run_uri(bucket: str, name: str) -> str:
    """``s3://<bucket>/runs/<name>``: the job's shared folder (splits, config, checkpoints, final model)."""
    return f"s3://{bucket}/runs/{name}"


def trainjob_manifest(name: str, namespace: str, image: str, nodes: int, gpus_per_node: int, config_uri: str,
                      cpu_per_gpu: int = 6, memory_per_gpu_gi: int = 40) -> dict[str, Any]:
    """The TrainJob for ``nodes`` x ``gpus_per_node`` GPUs training the config at ``config_uri``."""
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError(f"nodes and gpus_per_node must be >= 1, got {nodes} x {gpus_per_node}")
    gpus = str(gpus_per_node)
    memory = f"{memory_per_gpu_gi * gpus_per_node}Gi"
    cpu = str(cpu_per_gpu * gpus_per_node)

    def secret(var: str, name: str) -> dict:
        return {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": var}}}

    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "reviosa", "app.kubernetes.io/component": "training"}},
        "spec": {
            "runtimeRef": {"name": RUNTIME, "apiGroup": GROUP, "kind": RUNTIME_KIND},
            "trainer": {
                "image": image,
                "numNodes": nodes,
                "numProcPerNode": gpus_per_node,
                # torchrun takes node count, rank and rendezvous from the PET_* variables Trainer sets; --resume
                # makes a restarted JobSet continue from the last checkpoint in the shared folder.
                "command": ["python", "-m", "torch.distributed.run"],
                "args": ["-m", "reviosa.train", "--config", config_uri, "--resume", "--no-progress"],
                "env": [secret("AWS_ACCESS_KEY_ID", S3_SECRET), secret("AWS_SECRET_ACCESS_KEY", S3_SECRET),
                        secret("MLFLOW_TRACKING_USERNAME", MLFLOW_CLIENT_SECRET),
                        secret("MLFLOW_TRACKING_PASSWORD", MLFLOW_CLIENT_SECRET)],
                # cpu and memory as well: these replace the runtime container's resources.
                "resourcesPerNode": {
                    "requests": {"cpu": cpu, "memory": memory, GPU_TAINT_KEY: gpus},
                    "limits": {"cpu": str(2 * int(cpu)), "memory": memory, GPU_TAINT_KEY: gpus}},
            },
        },
    }


def api_client():
    """A Kubernetes API client: the pod's service account in a cluster, else the kubeconfig (``$KUBECONFIG``)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        conf = client.Configuration()
        config.load_incluster_config(client_configuration=conf)
        return client.ApiClient(conf)
    # The client reads $KUBECONFIG when it is imported; this reads it now.
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)


def state(job: dict) -> str:
    """``Complete``, ``Failed``, ``Suspended`` or ``Running`` from a TrainJob's status conditions."""
    conditions = {c.get("type"): c for c in job.get("status", {}).get("conditions", []) or []}
    for kind in ("Failed", "Complete", "Suspended"):
        if conditions.get(kind, {}).get("status") == "True":
            return kind
    return "Running"


def _condition_text(job: dict, kind: str) -> str:
    for c in job.get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
    return ""


def _index(pod) -> int:
    meta = pod.metadata
    raw = (meta.labels or {}).get(INDEX_KEY) or (meta.annotations or {}).get(INDEX_KEY) or "0"
    return int(raw)


def _restarts(pod) -> int:
    return sum(s.restart_count or 0 for s in (pod.status.container_statuses or []) if s.name == NODE)


def _ended(pod) -> bool:
    """Whether the node container has exited (its log is complete)."""
    return pod.status.phase in ("Succeeded", "Failed") or any(
        s.name == NODE and s.state is not None and s.state.terminated is not None
        for s in pod.status.container_statuses or [])


class TrainJobs:
    """Create TrainJobs and follow them through the Kubernetes API (``kubernetes`` client)."""

    def __init__(self, api=None, namespace: str = "reviosa", log: Log = _stdout, poll_s: float = 5.0,
                 schedule_timeout_s: float = 1800.0):
        from kubernetes import client

        self.api = api if api is not None else api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.namespace = namespace
        self.log = log
        self.poll_s = poll_s
        self.schedule_timeout_s = schedule_timeout_s

    def _args(self) -> tuple[str, str, str, str]:
        return GROUP, VERSION, self.namespace, PLURAL

    def get(self, name: str) -> dict | None:
        """The TrainJob ``name``, or None."""
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object(*self._args(), name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create(self, job: dict) -> dict:
        """Create ``job``; a job of that name left by an earlier attempt is reused, or replaced if it failed."""
        from kubernetes.client.rest import ApiException

        name = job["metadata"]["name"]
        for _ in range(2):
            try:
                created = self.custom.create_namespaced_custom_object(*self._args(), job)
                self.log(f"created TrainJob {self.namespace}/{name}: {job['spec']['trainer']['numNodes']} nodes x "
                         f"{job['spec']['trainer']['numProcPerNode']} GPUs")
                return created
            except ApiException as err:
                if err.status != 409:
                    raise
            existing = self.get(name)
            if existing is None:
                continue  # deleted between the two calls
            if state(existing) != "Failed":
                self.log(f"TrainJob {self.namespace}/{name} exists ({state(existing)}): following it")
                return existing
            # A failed attempt of this step: start it again; training resumes from its last checkpoint.
            self.log(f"TrainJob {self.namespace}/{name} failed before ({_condition_text(existing, 'Failed')}): "
                     "replacing it")
            self.delete(name)
        raise RuntimeError(f"TrainJob {self.namespace}/{name} could not be created")

    def delete(self, name: str, timeout_s: float = 120.0) -> None:
        """Delete a TrainJob (foreground, its pods with it) and wait until it is gone."""
        from kubernetes.client.rest import ApiException

        try:
            self.custom.delete_namespaced_custom_object(*self._args(), name, propagation_policy="Foreground")
        except ApiException as err:
            if err.status != 404:
                raise
        deadline = time.monotonic() + timeout_s
        while self.get(name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"TrainJob {self.namespace}/{name} was not deleted within {timeout_s:.0f} s")
            time.sleep(min(self.poll_s, 1.0))

    def pods(self, name: str) -> list:
        """The pods of TrainJob ``name`` (its JobSet's), newest last."""
        items = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOBSET_LABEL}={name}").items
        return sorted(items, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name))

    def wait(self, name: str, timeout_s: float | None = None) -> dict:
        """Follow ``name`` until it completes, streaming the rank-0 node's log; raise :class:`TrainJobFailed` with
        the failing pods' last lines when it fails, and ``TimeoutError`` after ``timeout_s``."""
        stop = threading.Event()
        follower = threading.Thread(target=self._follow, args=(name, stop), daemon=True, name=f"logs-{name}")
        follower.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending_since: float | None = None
        try:
            while True:
                job = self.get(name)
                if job is None:
                    raise TrainJobFailed(f"TrainJob {self.namespace}/{name} disappeared while running")
                current = state(job)
                if current in ("Complete", "Failed"):
                    break
                unschedulable = self._unschedulable(name)
                if unschedulable:
                    pending_since = pending_since or time.monotonic()
                    if time.monotonic() - pending_since > self.schedule_timeout_s:
                        raise TrainJobFailed(
                            f"TrainJob {self.namespace}/{name}: pods unschedulable for "
                            f"{self.schedule_timeout_s:.0f} s ({unschedulable}); the GPU pool cannot fit "
                            f"{job['spec']['trainer'].get('numNodes')} nodes x "
                            f"{job['spec']['trainer'].get('numProcPerNode')} GPUs")
                else:
                    pending_since = None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"TrainJob {self.namespace}/{name} did not finish within {timeout_s:.0f} s")
                time.sleep(self.poll_s)
        finally:
            stop.set()
            # The follower finishes the log it is reading, then reads what it has not shown yet, and stops.
            follower.join(timeout=60)
        if current == "Failed":
            self._report_failures(name)
            raise TrainJobFailed(f"TrainJob {self.namespace}/{name} failed: "
                                 f"{_condition_text(job, 'Failed') or 'no reason given'}")
        self.log(f"TrainJob {self.namespace}/{name} completed")
        return job

    def _unschedulable(self, name: str) -> str:
        for pod in self.pods(name):
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    return f"{pod.metadata.name}: {c.message or c.reason}"
        return ""

    def _leader(self, name: str):
        """The newest pod of node rank 0 that has started its container."""
        leaders = [p for p in self.pods(name) if _index(p) == 0 and p.status.phase != "Pending"]
        return leaders[-1] if leaders else None

    def _follow(self, name: str, stop: threading.Event) -> None:
        # Lines shown per container run (pod uid, restarts): a follow stream the API server cuts short is resumed
        # without repeating them, and a run is done once its log was read after the container exited.
        shown: dict[tuple[str, int], int] = {}
        done: set[tuple[str, int]] = set()
        try:
            while True:
                finishing = stop.is_set()
                pod = self._leader(name)
                key = (pod.metadata.uid, _restarts(pod)) if pod is not None else None
                if key is not None and key not in done:
                    ended = _ended(pod)
                    before = shown.get(key, 0)
                    shown[key] = self._stream(pod.metadata.name, follow=not (ended or finishing), skip=before)
                    if ended or finishing:
                        done.add(key)
                    elif shown[key] == before:
                        stop.wait(self.poll_s)  # the stream ended with nothing new: do not spin
                    continue
                if finishing:
                    return
                stop.wait(self.poll_s)
        except Exception as err:  # noqa: BLE001 - a broken log stream must not fail the training step
            self.log(f"[log stream of {name} stopped: {type(err).__name__}: {err}]")

    def _stream(self, pod: str, follow: bool, skip: int = 0) -> int:
        """Show the node container's log lines after the first ``skip``; the number of lines read."""
        resp = self.core.read_namespaced_pod_log(pod, self.namespace, container=NODE, follow=follow,
                                                 _preload_content=False)
        buffer, count = b"", 0

        def show(raw: bytes) -> None:
            nonlocal count
            if count >= skip:
                self.log(f"[{pod}] {raw.decode(errors='replace')}")
            count += 1

        try:
            for chunk in resp.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    show(line)
            if buffer:
                show(buffer)
        finally:
            resp.release_conn()
        return count

    def _report_failures(self, name: str, lines: int = 40) -> None:
        """Print the last lines of every pod whose node container failed (the leader's log was streamed)."""
        from kubernetes.client.rest import ApiException

        for pod in self.pods(name):
            failed = pod.status.phase == "Failed" or any(
                s.name == NODE and s.state and s.state.terminated and s.state.terminated.exit_code
                for s in pod.status.container_statuses or [])
            if not failed:
                continue
            try:
                tail = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container=NODE,
                                                         tail_lines=lines)
            except ApiException as err:
                tail = f"(log unavailable: {err.status} {err.reason})"
            self.log(f"--- last {lines} lines of failed pod {pod.metadata.name} ---")
            for line in str(tail).splitlines():
                self.log(f"[{pod.metadata.name}] {line}")


def run_multinode(cfg, model_out: str | os.PathLike, *, nodes: int, gpus_per_node: int, image: str,
                  namespace: str, name: str, jobs: TrainJobs | None = None, storage=None,
                  timeout_s: float | None = None) -> dict:
    """Train ``cfg`` (a placed :class:`~reviosa.train.config.TrainConfig`) as a TrainJob and put the final model in
    ``model_out``; the run summary."""
    from reviosa.storage.config import load_storage_config
    from reviosa.storage.fetch import download, is_s3
    from reviosa.storage.objects import join, read_text, upload, write_text

    storage = storage or load_storage_config()
    if not image or "@sha256:" not in image:
        raise ValueError(f"a TrainJob needs the project image pinned by digest (the admission policy refuses "
                         f"anything else), got {image!r}: compile the pipeline with REVIOSA_IMAGE=<repo>@sha256:...")
    shared = run_uri(storage.bucket, name)
    data = {"train": cfg.data.train, "val": cfg.data.val}
    for split, path in data.items():
        if path and not is_s3(path):
            upload(path, join(shared, "data", split), storage)
            data[split] = join(shared, "data", split)
    placed = cfg.model_copy(update={
        "data": cfg.data.model_copy(update=data), "out": POD_OUT, "publish": shared,
        "checkpoint": cfg.checkpoint.model_copy(update={"dir": join(shared, "checkpoints")})})
    config_uri = join(shared, "train_config.yaml")
    write_text(config_uri, placed.to_yaml(), storage)
    jobs = jobs or TrainJobs(namespace=namespace)
    jobs.create(trainjob_manifest(name, namespace, image, nodes, gpus_per_node, config_uri))
    jobs.wait(name, timeout_s=timeout_s)
    summary = read_text(join(shared, "summary.json"), storage)
    if summary is None:
        raise TrainJobFailed(f"TrainJob {namespace}/{name} completed but left no {join(shared, 'summary.json')}")
    download(join(shared, "final"), Path(model_out), storage)
    out = json.loads(summary)
    out.update({"trainjob": name, "run_uri": shared})
    return out
