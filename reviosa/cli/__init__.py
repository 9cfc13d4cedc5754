"""The ``reviosa`` command line: one verb group per concern, registered from ``reviosa/cli/<concern>.py``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="reviosa",
    help="Interaction-aware referring video object segmentation (InterRVOS): data, models, evaluation, MLOps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; heavy imports (torch, mlflow, kfp) stay inside the commands so
# ``reviosa --help`` is instant.
_MODULES = ["data", "evaluate", "baselines", "demo", "services", "runs", "dataversions", "synth", "annotate", "model",
            "serve", "pipeline", "train"]

for _name in _MODULES:
    importlib.import_module(f"reviosa.cli.{_name}").register(app)


def main() -> None:
    """Console entry point."""
    app()
