"""Render a synthetic interaction split (the demo's and tests' data)."""

from kfp.dsl import Dataset, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def synth_split(videos: int, split: Output[Dataset], seed: int = 0, name: str = "", config: str = "default",
                overrides: list = []):
    """Write ``videos`` videos of world ``config`` + ``overrides`` with mask tracks, scene graphs and expressions."""
    from reviosa.pipelines import steps

    split.metadata.update(steps.synth_split(split.path, videos, seed, name, config, overrides))
