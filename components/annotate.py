"""Annotation stages 1-4: scene graph, interactions, role-aware expressions (offline or an LLM endpoint)."""

from kfp.dsl import Dataset, Input, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def annotate(split: Input[Dataset], annotated: Output[Dataset], backend: str = "offline", base_url: str = "",
             model: str = "", config: str = "default", overrides: list = []):
    """Annotate ``split`` into ``annotated`` (AnnotateConfig ``config``, ``overrides``, then the pipeline's UI
    switches, as in training); the report's counts become metadata."""
    from reviosa.pipelines import steps

    switches = steps.annotate_switches(backend, base_url, model)
    annotated.metadata.update(steps.annotate(split.path, annotated.path, config, list(overrides) + switches))
