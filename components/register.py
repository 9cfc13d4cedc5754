"""Register a trained checkpoint with its scores in the MLflow model registry (alias ``candidate``)."""

from kfp.dsl import Input, Metrics, Model, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def register(model: Input[Model], metrics: Input[Metrics], tracking_uri: str, name: str = "reviosa",
             data_version: str = "") -> str:
    """Return the new model version."""
    from reviosa.pipelines import steps

    return steps.register(model.path, dict(metrics.metadata), name, tracking_uri, data_version)["version"]
