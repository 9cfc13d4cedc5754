"""Annotation pipeline: fetch a raw split → check mask tracks → annotate (stages 1-4) → DVC snapshot."""

from kfp import dsl

from components.annotate import annotate
from components.fetch_split import fetch_split
from components.mask_tracks import mask_tracks
from components.snapshot import snapshot
from reviosa.pipelines.resources import ANNOTATION_LLM_MODEL, ANNOTATION_LLM_URL, cpu, flaky, s3_env


def annotate_steps(raw_split: str, backend: str, base_url: str, llm_model: str, overrides):
    """The annotation steps, shared with the end-to-end pipeline; returns the annotate task."""
    fetched = flaky(s3_env(cpu(fetch_split(source=raw_split), "1", "4Gi")))
    # A raw s3:// prefix can change under the same name (unlike a DVC tag): always read it again.
    fetched.set_caching_options(False).set_display_name("fetch raw split")
    tracks = cpu(mask_tracks(split=fetched.outputs["split"]), "1", "4Gi")
    tracks.set_display_name("mask tracks")
    labelled = annotate(split=fetched.outputs["split"], backend=backend, base_url=base_url, model=llm_model,
                        overrides=overrides)
    # An LLM answers differently from one run to the next and the endpoint may change behind one URL:
    # never reuse a cached annotation. Endpoint hiccups are retried.
    flaky(s3_env(cpu(labelled, "2", "8Gi"))).set_caching_options(False).after(tracks)
    labelled.set_display_name("annotate (stages 1-4)")
    return labelled


@dsl.pipeline(name="reviosa-annotation",
              description="Raw split (s3:// prefix or folder) → validated mask tracks → role-aware expressions → "
                          "a DVC-versioned dataset in S3.")
def annotation_pipeline(raw_split: str, data_repo: str = "", split_name: str = "train", backend: str = "offline",
                        base_url: str = ANNOTATION_LLM_URL, llm_model: str = ANNOTATION_LLM_MODEL,
                        annotate_overrides: list = [],
                        message: str = "annotation pipeline: new split") -> str:
    """Annotate a raw split and version it with DVC; returns the new data-vN tag.

    Args:
        raw_split: Raw split to annotate: an s3:// prefix or a folder in the MeViS layout.
        data_repo: Git + DVC repository (URL or folder) where the annotated split is versioned as a data-vN tag.
        split_name: Folder of the split in that repository: data/<split_name>.
        backend: Annotation backend: offline (rules from the scene graph) or openai (an OpenAI-compatible LLM).
        base_url: URL of the OpenAI-compatible LLM server (backend openai).
        llm_model: Model name asked of that LLM server.
        annotate_overrides: Extra annotation config overrides, KEY=VALUE each.
        message: Message of the dataset version (git commit and tag).
    """
    labelled = annotate_steps(raw_split, backend, base_url, llm_model, annotate_overrides)
    snap = snapshot(split=labelled.outputs["annotated"], repo=data_repo, name=split_name, message=message)
    # A snapshot pushes to S3 and tags git: a cached one would report a version without creating it.
    flaky(s3_env(cpu(snap, "1", "4Gi"))).set_caching_options(False)
    snap.set_display_name("dataset snapshot (DVC)")
    return snap.outputs["version"]
