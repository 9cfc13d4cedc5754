"""Render a synthetic interaction split (the demo's and tests' data)."""

from kfp.dsl import Dataset, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def synth_split(videos: int, split: Output[Dataset], frames: int = 8, size: int = 64, seed: int = 0, name: str = ""):
    """Write ``videos`` synthetic videos with mask tracks, scene graphs and expressions."""
    from reviosa.pipelines import steps

    split.metadata.update(steps.synth_split(split.path, videos, frames, size, seed, name))
