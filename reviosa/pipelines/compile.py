"""Which pipelines exist, compiling them to YAML specs, and loading a spec back."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

#: name → ``module:function`` in the repository's ``pipelines/`` folder.
PIPELINES = {
    "annotation": "pipelines.annotation:annotation_pipeline",
    "training": "pipelines.training:training_pipeline",
    "evaluation": "pipelines.evaluation:evaluation_pipeline",
    "end-to-end": "pipelines.end_to_end:end_to_end_pipeline",
}


def project_root() -> Path:
    """The checkout holding ``pipelines/`` and ``components/`` (they are not part of the installed package)."""
    env = os.environ.get("REVIOSA_PROJECT_ROOT")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "pipelines" / "end_to_end.py").is_file() and (root / "components").is_dir():
            return root
    raise FileNotFoundError("cannot find the reviosa checkout (pipelines/ and components/); run from it or set "
                            "REVIOSA_PROJECT_ROOT")


def load_pipeline(name: str):
    """The ``@dsl.pipeline`` function called ``name`` (see ``PIPELINES``)."""
    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r} (known: {', '.join(PIPELINES)})")
    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
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


def compile_all(out_dir: str | os.PathLike) -> list[Path]:
    """Compile every pipeline."""
    return [compile_pipeline(name, out_dir) for name in PIPELINES]


def load_spec(path: str | os.PathLike) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of a compiled YAML; the second is ``{}`` when no step has K8s settings."""
    import yaml

    docs = list(yaml.safe_load_all(Path(path).read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})
