"""Run a checkpoint over a split into the prediction layout."""

from kfp.dsl import Dataset, Input, Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def predict(model: Input[Model], split: Input[Dataset], predictions: Output[Dataset], max_videos: int = 0,
            device: str = "auto"):
    """``<predictions>/<video>/<exp_id>/actor|target/<frame>.png`` for every expression."""
    from reviosa.pipelines import steps

    predictions.metadata.update(steps.predict_split(model.path, split.path, predictions.path, max_videos, device))
