"""Training + evaluation pipeline: a DVC dataset version → train on the GPU pool → predict → evaluate."""

from kfp import dsl

from components.fetch_split import fetch_split
from components.train import train
from pipelines.evaluation import evaluate_steps
from reviosa.pipelines.resources import cpu, flaky, gpu, s3_env


def train_steps(source, data_repo, train_path, val_path, **train_args):
    """Fetch both splits of one dataset version and train with the ``train`` component's ``train_args``; returns
    (train task, validation split output)."""
    tr = flaky(s3_env(cpu(fetch_split(source=source, repo=data_repo, path=train_path), "1", "4Gi")))
    tr.set_display_name("fetch train split")
    va = flaky(s3_env(cpu(fetch_split(source=source, repo=data_repo, path=val_path), "1", "4Gi")))
    va.set_display_name("fetch val split")
    job = train(train_split=tr.outputs["split"], val_split=va.outputs["split"], **train_args)
    s3_env(gpu(job, 1, "8", "64Gi"))
    job.set_display_name("train ReVIOSa")
    return job, va.outputs["split"]


@dsl.pipeline(name="reviosa-training",
              description="Train ReVIOSa on a dataset version (DVC tag) and score it on the validation split.")
def training_pipeline(data_version: str = "data-v1", data_repo: str = "", train_path: str = "data/train",
                      val_path: str = "data/val", model_size: str = "1b", epochs: float = 0.0, aml: bool = True,
                      tokens: bool = True, overrides: list = [],
                      tracking_uri: str = "http://mlflow.reviosa.svc.cluster.local:5000", max_eval_videos: int = 0):
    job, val = train_steps(data_version, data_repo, train_path, val_path, config=model_size, overrides=overrides,
                           epochs=epochs, aml=aml, tokens=tokens, tracking_uri=tracking_uri)
    evaluate_steps(job.outputs["model"], val, max_eval_videos)
