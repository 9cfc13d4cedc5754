"""Evaluation pipeline: a registered checkpoint and a split → predictions → InterRVOS scores and report."""

from kfp import dsl

from components.evaluate import evaluate
from components.fetch_model import fetch_model
from components.fetch_split import fetch_split
from components.predict import predict
from reviosa.pipelines.resources import cpu, flaky, gpu, s3_env


def evaluate_steps(model, split, max_videos):
    """Predict on the GPU pool, score on CPU; returns the evaluate task (shared with the other pipelines)."""
    pred = gpu(predict(model=model, split=split, max_videos=max_videos), 1, "4", "24Gi")
    pred.set_display_name("predict")
    scored = cpu(evaluate(split=split, predictions=pred.outputs["predictions"]), "2", "8Gi")
    scored.set_display_name("evaluate (InterRVOS protocol)")
    return scored


@dsl.pipeline(name="reviosa-evaluation",
              description="Score a checkpoint (folder or s3://) on a split: Actor/Target/RVOS J, F, J&F + report.")
def evaluation_pipeline(model_source: str, split_source: str, data_repo: str = "", split_path: str = "",
                        max_videos: int = 0):
    """Predict with a checkpoint on a split and score it with the InterRVOS protocol.

    Args:
        model_source: Checkpoint to score: a save_pretrained folder or its s3:// URI.
        split_source: The split: a DVC version tag (with data_repo), else an s3:// prefix or a folder.
        data_repo: Git + DVC repository (URL or folder) holding the version; empty: split_source is a location.
        split_path: Path of the split inside the repository (or below split_source), e.g. data/val.
        max_videos: Score only the first N videos; 0 scores all of them.
    """
    model = flaky(s3_env(cpu(fetch_model(source=model_source), "1", "8Gi")))
    model.set_display_name("fetch model")
    split = flaky(s3_env(cpu(fetch_split(source=split_source, repo=data_repo, path=split_path), "1", "4Gi")))
    split.set_display_name("fetch split")
    evaluate_steps(model.outputs["model"], split.outputs["split"], max_videos)
