"""``reviosa pipeline``: compile, submit and run locally the Kubeflow pipelines."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the pipeline commands."""
    group = typer.Typer(help="Kubeflow pipelines: compile, submit, run-local.", no_args_is_help=True)
    app.add_typer(group, name="pipeline")
