"""Fetch a split: ``path`` of a DVC version (``source`` = tag, ``repo`` = git URL), or an ``s3://`` prefix or folder."""

from kfp.dsl import Dataset, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def fetch_split(source: str, split: Output[Dataset], repo: str = "", path: str = ""):
    """Copy the split into the output dataset; its counts become metadata."""
    from reviosa.pipelines import steps

    split.metadata.update(steps.fetch_split(source, split.path, repo, path))
