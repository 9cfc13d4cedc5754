"""Bring a registered checkpoint (folder or ``s3://`` URI written by ``save_pretrained``) into the pipeline."""

from kfp.dsl import Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def fetch_model(source: str, model: Output[Model]):
    """Copy the checkpoint folder into the output model; its config name becomes metadata."""
    from reviosa.pipelines import steps

    model.metadata.update(steps.fetch_model(source, model.path))
