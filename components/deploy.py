"""Deploy a model as a KServe InferenceService (manifest always written; applied with ``apply``)."""

from kfp.dsl import Artifact, Input, Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def deploy(model: Input[Model], manifest: Output[Artifact], image: str, name: str = "reviosa",
           namespace: str = "reviosa", gpus: int = 1, apply: bool = True, model_version: str = "",
           tracking_uri: str = ""):
    """The predictor reads the model from the artefact's S3 URI through KServe's storage initializer; with
    ``model_version`` (of registered model ``name``) the InferenceService and the MLflow version name each other."""
    from reviosa.pipelines import steps

    manifest.metadata.update(steps.deploy(name, steps.storage_uri(model.uri), image, gpus, namespace, apply,
                                          manifest.path, model_version, tracking_uri))
