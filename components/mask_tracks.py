"""Check the split's object mask tracks before the language stages use them."""

from kfp.dsl import Dataset, Input, Metrics, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def mask_tracks(split: Input[Dataset], tracks: Output[Metrics]):
    """Fail on objects without a usable track; log the counts."""
    from reviosa.pipelines import steps

    for key, value in steps.mask_tracks(split.path).items():
        tracks.log_metric(key, value)
