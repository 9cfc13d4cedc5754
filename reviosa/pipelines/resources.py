"""Task settings shared by the pipelines: CPU/memory requests, the GPU pool, retries, caching, secrets."""

from __future__ import annotations

#: Node label and taint of the GPU pool (``infra/terraform`` creates the pool with both).
GPU_POOL_LABEL = ("reviosa.io/pool", "gpu")
GPU_TAINT_KEY = "nvidia.com/gpu"
#: Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and the config map holding ``storage.yaml`` (the
#: cluster's StorageConfig) and MLFLOW_TRACKING_URI (``manifests/base/storage-config.yaml``).
S3_SECRET = "reviosa-s3"
#: the pipeline steps' MLflow account (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)
MLFLOW_CLIENT_SECRET = "reviosa-mlflow-client"
STORAGE_CONFIG_MAP = "reviosa-storage"
#: where steps (and the manifests' reviosa containers) mount that config map
STORAGE_CONFIG_DIR = "/etc/reviosa"
#: the in-cluster annotation LLM (``manifests/overlays/gpu-cloud/annotation-llm.yaml``): KServe's Hugging Face runtime
#: on vLLM behind the InferenceService's Standard-mode Service, OpenAI API under /openai/v1, served under its name;
#: the annotation pipelines' defaults and AnnotateConfig ``cluster``
ANNOTATION_LLM_URL = "http://annotation-llm-predictor.reviosa.svc.cluster.local/openai/v1"
ANNOTATION_LLM_MODEL = "annotation-llm"


def cpu(task, cpu: str = "1", memory: str = "4Gi"):
    """Request (and cap at twice) CPU and memory for a CPU step."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_cpu_limit(str(2 * float(cpu))).set_memory_limit(memory)
    return task


def gpu(task, gpus=1, cpu: str = "8", memory: str = "48Gi"):
    """Put a step on the tainted GPU pool: ``nvidia.com/gpu`` limit (a number or a pipeline parameter), node
    selector, toleration."""
    from kfp import kubernetes

    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    kubernetes.add_node_selector(task, label_key=GPU_POOL_LABEL[0], label_value=GPU_POOL_LABEL[1])
    kubernetes.add_toleration(task, key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")
    # NCCL and dataloader workers need more shared memory than a container's 64 MiB default.
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="16Gi")
    return task


def s3_env(task):
    """Give a step the cluster's storage config (mounted file), S3 credentials (secret), MLflow URL and login.

    The step reaches S3 only through ``load_storage_config()``, which reads the mounted ``storage.yaml``; the
    boto variables dvc needs are derived from it in code (``StorageConfig.client_env``).
    """
    from kfp import kubernetes

    from reviosa.storage.config import CONFIG_ENV

    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"})
    kubernetes.use_config_map_as_volume(task, config_map_name=STORAGE_CONFIG_MAP, mount_path=STORAGE_CONFIG_DIR)
    # The file's path comes from the config map too, like the mount it names: both are Kubernetes platform settings,
    # which a local run (kfp.local) ignores, so there a step keeps the storage config its parent process names.
    kubernetes.use_config_map_as_env(task, config_map_name=STORAGE_CONFIG_MAP,
                                     config_map_key_to_env={k: k for k in (CONFIG_ENV, "MLFLOW_TRACKING_URI")})
    # The cluster's MLflow asks for a login (basic-auth app); MLflow's client reads these two variables.
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_CLIENT_SECRET, secret_key_to_env={
        k: k for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")})
    return task


def flaky(task, retries: int = 3):
    """Retry a step that talks to the network (LLM endpoint, S3, MLflow, the Kubernetes API) with backoff."""
    task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")
    return task
