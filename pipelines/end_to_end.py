"""End-to-end pipeline: annotate → snapshot → train → evaluate → register → deploy, failures recorded."""

from kfp import dsl

from components.deploy import deploy
from components.record_failure import record_failure
from components.register import register
from components.snapshot import snapshot
from components.train import train
from pipelines.annotation import annotate_steps
from pipelines.evaluation import evaluate_steps
from reviosa.pipelines.image import IMAGE
from reviosa.pipelines.resources import ANNOTATION_LLM_MODEL, ANNOTATION_LLM_URL, cpu, flaky, gpu, s3_env


@dsl.pipeline(name="reviosa-end-to-end",
              description="Raw splits → annotated, DVC-versioned dataset → ReVIOSa trained on the GPU pool → "
                          "InterRVOS scores → MLflow registry (candidate) → KServe InferenceService.")
def end_to_end_pipeline(raw_train: str, raw_val: str, data_repo: str, model_size: str = "1b", epochs: float = 0.0,
                        aml: bool = True, tokens: bool = True, train_overrides: list = [],
                        tracking_uri: str = "http://mlflow.reviosa.svc.cluster.local:5000",
                        backend: str = "offline", base_url: str = ANNOTATION_LLM_URL,
                        llm_model: str = ANNOTATION_LLM_MODEL,
                        annotate_overrides: list = [],
                        model_name: str = "reviosa", namespace: str = "reviosa", deploy_model: bool = True,
                        max_eval_videos: int = 0, nodes: int = 1, gpus_per_node: int = 1):
    """Annotate, version, train, score, register and deploy ReVIOSa in one run.

    Args:
        raw_train: Raw training split to annotate: an s3:// prefix or a folder in the MeViS layout.
        raw_val: Raw validation split to annotate (s3:// prefix or folder); the model is scored on it.
        data_repo: Git + DVC repository (URL or folder) where both annotated splits are versioned as data-vN tags.
        model_size: Training config: a shipped name (tiny, 1b, 4b) or a YAML path.
        epochs: Training length in passes over the training items; 0 keeps the config's own length.
        aml: Attention-mask loss on (ReVIOSa) or off (Table-4 ablation).
        tokens: Two interaction-aware tokens [SEG_ACT]/[SEG_TAR] (ReVIOSa) or one shared [SEG] token (ablation).
        train_overrides: Extra training config overrides, KEY=VALUE each (e.g. steps=300).
        tracking_uri: MLflow server the training run, evaluation run and registered version go to.
        backend: Annotation backend: offline (rules from the scene graph) or openai (an OpenAI-compatible LLM).
        base_url: URL of the OpenAI-compatible LLM server (backend openai).
        llm_model: Model name asked of that LLM server.
        annotate_overrides: Extra annotation config overrides, KEY=VALUE each.
        model_name: Registered model name in MLflow; also the InferenceService name.
        namespace: Kubernetes namespace of the InferenceService (and of a multi-node TrainJob).
        deploy_model: Deploy the registered version as a KServe InferenceService after registration.
        max_eval_videos: Score only the first N validation videos; 0 scores all of them.
        nodes: Training nodes; more than 1 runs a Kubeflow Trainer TrainJob.
        gpus_per_node: GPUs (training processes) per training node.
    """
    recorder = cpu(record_failure(), "0.25", "512Mi")
    recorder.set_display_name("record final status")
    with dsl.ExitHandler(recorder, name="reviosa-run"):
        labelled_train = annotate_steps(raw_train, backend, base_url, llm_model, annotate_overrides)
        labelled_val = annotate_steps(raw_val, backend, base_url, llm_model, annotate_overrides)
        snap_train = snapshot(split=labelled_train.outputs["annotated"], repo=data_repo, name="train",
                              message="end-to-end pipeline: annotated train split")
        snap_val = snapshot(split=labelled_val.outputs["annotated"], repo=data_repo, name="val",
                            message="end-to-end pipeline: annotated val split").after(snap_train)
        for snap in (snap_train, snap_val):
            flaky(s3_env(cpu(snap, "1", "4Gi"))).set_caching_options(False)
        snap_train.set_display_name("dataset snapshot (DVC): train")
        snap_val.set_display_name("dataset snapshot (DVC): val")
        job = train(train_split=labelled_train.outputs["annotated"], val_split=labelled_val.outputs["annotated"],
                    config=model_size, overrides=train_overrides, epochs=epochs, aml=aml, tokens=tokens,
                    tracking_uri=tracking_uri, nodes=nodes, gpus_per_node=gpus_per_node, image=IMAGE,
                    namespace=namespace, data_version=snap_val.outputs["version"], data_md5=snap_val.outputs["md5"],
                    data_repo=data_repo, data_path="data/train", kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
        s3_env(gpu(job, gpus_per_node, "8", "64Gi"))
        job.set_display_name("train ReVIOSa")
        scored = evaluate_steps(job.outputs["model"], labelled_val.outputs["annotated"], max_eval_videos)
        reg = register(model=job.outputs["model"], metrics=scored.outputs["metrics"], tracking_uri=tracking_uri,
                       name=model_name, data_version=snap_val.outputs["version"], data_md5=snap_val.outputs["md5"],
                       data_repo=data_repo, data_path="data/val", kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                       kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
        flaky(s3_env(cpu(reg, "1", "4Gi"))).set_caching_options(False)
        reg.set_display_name("register (MLflow, candidate)")
        with dsl.If(deploy_model == True):  # noqa: E712
            dep = deploy(model=job.outputs["model"], image=IMAGE, name=model_name, namespace=namespace,
                         model_version=reg.output, tracking_uri=tracking_uri)
            flaky(cpu(dep, "0.5", "1Gi")).set_caching_options(False)
            dep.set_display_name("deploy (KServe)")
