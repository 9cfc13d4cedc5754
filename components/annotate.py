"""Annotation stages 1-4: scene graph, interactions, role-aware expressions (offline or an LLM endpoint)."""

from kfp.dsl import Dataset, Input, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def annotate(split: Input[Dataset], annotated: Output[Dataset], backend: str = "offline", base_url: str = "",
             model: str = ""):
    """Annotate ``split`` into ``annotated``; the report's counts become metadata."""
    from reviosa.pipelines import steps

    annotated.metadata.update(steps.annotate(split.path, annotated.path, backend, base_url, model))
