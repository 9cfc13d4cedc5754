"""Which pipelines exist, compiling them to YAML specs, and loading a spec back."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

#: name → ``module:function`` in the ``pipelines`` package (installed beside ``reviosa`` and ``components``).
PIPELINES = {
    "annotation": "pipelines.annotation:annotation_pipeline",
    "training": "pipelines.training:training_pipeline",
    "evaluation": "pipelines.evaluation:evaluation_pipeline",
    "end-to-end": "pipelines.end_to_end:end_to_end_pipeline",
}


def load_pipeline(name: str):
    """The ``@dsl.pipeline`` function called ``name`` (see ``PIPELINES``)."""
    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r} (known: {', '.join(PIPELINES)})")
    module, func = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module), func)


def compile_pipeline(name: str, out_dir: str | os.PathLike) -> Path:
    """Compile one pipeline to ``<out_dir>/<name>.yaml`` (pipeline spec + Kubernetes platform spec)."""
    from kfp import compiler

    out = Path(out_dir) / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    compiler.Compiler().compile(load_pipeline(name), str(tmp))
    os.replace(tmp, out)
    return out


def load_spec(path: str | os.PathLike) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of a compiled YAML; the second is ``{}`` when no step has K8s settings."""
    import yaml

    docs = list(yaml.safe_load_all(Path(path).read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})
