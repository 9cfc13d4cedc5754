"""Running a pipeline on this machine with ``kfp.local`` (every step a subprocess of this Python)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reviosa.pipelines.compile import load_pipeline


def run_local(name: str, params: dict[str, Any], pipeline_root: str | os.PathLike) -> dict[str, Any]:
    """Run pipeline ``name`` with ``kfp.local.SubprocessRunner(use_venv=False)``; returns its task outputs.

    Resource, GPU and Kubernetes settings are ignored locally; artefacts are folders under ``pipeline_root``.
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # The project image has reviosa and kfp installed; locally this venv plays that role (no pip install).
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    task = load_pipeline(name)(**params)
    outputs = getattr(task, "outputs", None) or {}
    return dict(outputs) if isinstance(outputs, dict) else {"output": task.output}


def artifact_dirs(pipeline_root: str | os.PathLike, pipeline: str) -> list[Path]:
    """The run folders ``kfp.local`` wrote for a pipeline, newest last."""
    return sorted(Path(pipeline_root).glob(f"{pipeline}-*"), key=lambda p: p.stat().st_mtime)
