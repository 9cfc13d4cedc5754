"""Training + evaluation pipeline: a DVC dataset version → train on the GPU pool → predict → evaluate."""

from kfp import dsl

from components.fetch_split import fetch_split
from components.train import train
from pipelines.evaluation import evaluate_steps
from reviosa.pipelines.image import IMAGE
from reviosa.pipelines.resources import cpu, flaky, gpu, s3_env


def train_steps(source, data_repo, train_path, val_path, gpus_per_node=1, **train_args):
    """Fetch both splits of one dataset version and train with the ``train`` component's ``train_args`` on
    ``gpus_per_node`` GPUs of the GPU pool; returns (train task, validation split output)."""
    tr = flaky(s3_env(cpu(fetch_split(source=source, repo=data_repo, path=train_path), "1", "4Gi")))
    tr.set_display_name("fetch train split")
    va = flaky(s3_env(cpu(fetch_split(source=source, repo=data_repo, path=val_path), "1", "4Gi")))
    va.set_display_name("fetch val split")
    job = train(train_split=tr.outputs["split"], val_split=va.outputs["split"], gpus_per_node=gpus_per_node,
                image=IMAGE, **train_args)
    s3_env(gpu(job, gpus_per_node, "8", "64Gi"))
    job.set_display_name("train ReVIOSa")
    return job, va.outputs["split"]


@dsl.pipeline(name="reviosa-training",
              description="Train ReVIOSa on a dataset version (DVC tag) and score it on the validation split.")
def training_pipeline(data_version: str = "data-v1", data_repo: str = "", train_path: str = "data/train",
                      val_path: str = "data/val", model_size: str = "1b", epochs: float = 0.0, aml: bool = True,
                      tokens: bool = True, overrides: list = [],
                      tracking_uri: str = "http://mlflow.reviosa.svc.cluster.local:5000", max_eval_videos: int = 0,
                      nodes: int = 1, gpus_per_node: int = 1):
    """Train ReVIOSa on one DVC dataset version and score it on that version's validation split.

    Args:
        data_version: DVC version of the data to train on: a data-vN tag (or any git revision) of data_repo.
        data_repo: Git + DVC repository (URL or folder) holding the version.
        train_path: Path of the training split in the repository.
        val_path: Path of the validation split in the repository.
        model_size: Training config: a shipped name (tiny, 1b, 4b) or a YAML path.
        epochs: Training length in passes over the training items; 0 keeps the config's own length.
        aml: Attention-mask loss on (ReVIOSa) or off (Table-4 ablation).
        tokens: Two interaction-aware tokens [SEG_ACT]/[SEG_TAR] (ReVIOSa) or one shared [SEG] token (ablation).
        overrides: Extra training config overrides, KEY=VALUE each (e.g. steps=300).
        tracking_uri: MLflow server the training run goes to.
        max_eval_videos: Score only the first N validation videos; 0 scores all of them.
        nodes: Training nodes; more than 1 runs a Kubeflow Trainer TrainJob.
        gpus_per_node: GPUs (training processes) per training node.
    """
    job, val = train_steps(data_version, data_repo, train_path, val_path, gpus_per_node, config=model_size,
                           overrides=overrides, epochs=epochs, aml=aml, tokens=tokens, tracking_uri=tracking_uri,
                           nodes=nodes, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                           kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
    evaluate_steps(job.outputs["model"], val, max_eval_videos)
