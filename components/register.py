"""Register a trained checkpoint with its scores in the MLflow model registry (alias ``candidate``)."""

from kfp.dsl import Input, Metrics, Model, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def register(model: Input[Model], metrics: Input[Metrics], tracking_uri: str, name: str = "reviosa",
             data_version: str = "", data_md5: str = "", data_repo: str = "", data_path: str = "data/val",
             kfp_run_id: str = "", kfp_run_name: str = "") -> str:
    """Register the training run's logged model with its scores (an evaluation run on ``data_path`` at
    ``data_version``) and lineage; return the new model version."""
    from reviosa.pipelines import steps

    return steps.register(model.path, dict(metrics.metadata), name, tracking_uri, data_version, dict(model.metadata),
                          data_md5, data_repo, data_path, kfp_run_id, kfp_run_name)["version"]
