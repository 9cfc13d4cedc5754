"""Version an annotated split with DVC in S3 (tag ``data-vN``)."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def snapshot(split: Input[Dataset], repo: str, name: str,
             message: str) -> NamedTuple("Snapshot", [("version", str), ("md5", str)]):
    """Copy the split into ``repo``'s ``data/<name>``, ``dvc push``, tag; return the tag and the content hash."""
    from reviosa.pipelines import steps

    made = steps.snapshot(split.path, repo, name, message)
    return made["version"], made["md5"]
