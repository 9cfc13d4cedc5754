"""``reviosa runs ...``: log evaluations, compare runs, register and promote models in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import typer

runs_app = typer.Typer(help="MLflow runs and the model registry.", no_args_is_help=True)
_URI = typer.Option(None, "--tracking-uri", help="MLflow server (default: $MLFLOW_TRACKING_URI or the local stack)")


def register(app: typer.Typer) -> None:
    """Attach the ``runs`` verb group."""
    app.add_typer(runs_app, name="runs")


def _client(uri: str | None):
    from reviosa.tracking.config import client

    try:
        return client(uri)
    except RuntimeError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None


@runs_app.command("compare")
def compare(run_a: str = typer.Argument(..., help="Baseline run id"),
            run_b: str = typer.Argument(..., help="Run id compared against it"),
            tracking_uri: str | None = _URI) -> None:
    """Print every metric of both runs and the delta B - A."""
    from reviosa.tracking.compare import compare_runs, format_deltas
    from reviosa.tracking.ui import compare_runs_url

    client = _client(tracking_uri)
    try:
        deltas = compare_runs(run_a, run_b, client)
    except ValueError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_deltas(deltas, run_a, run_b))
    exps = sorted({client.get_run(r).info.experiment_id for r in (run_a, run_b)})
    typer.echo(f"UI: {compare_runs_url(client.tracking_uri, [run_a, run_b], exps)}", err=True)


@runs_app.command("log-eval")
def log_eval(metrics: Path = typer.Argument(..., help="JSON object of metric name -> value"),
             dataset: str = typer.Option(..., help="Dataset slug; the experiment is reviosa/eval/<dataset>"),
             run_name: str | None = typer.Option(None, help="Run name"),
             table: Path | None = typer.Option(None, help="Per-expression table (.csv or .json)"),
             plot: list[Path] = typer.Option([], help="Plot image files (repeatable)"),
             gif: list[Path] = typer.Option([], help="Overlay GIF files (repeatable)"),
             tracking_uri: str | None = _URI) -> None:
    """Log an evaluation result file as a run; prints the run id."""
    import contextlib
    import sys

    from reviosa.tracking.evaluation import log_evaluation

    try:
        # MLflow prints the run's UI link to stdout; send it to stderr so stdout is just the id for scripts.
        with contextlib.redirect_stdout(sys.stderr):
            run_id = log_evaluation(json.loads(metrics.read_text()), dataset=dataset, run_name=run_name,
                                    per_expression=table, plots=plot, gifs=gif,
                                    tracking_uri=_client(tracking_uri).tracking_uri)
    except (ValueError, OSError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(run_id)


@runs_app.command("register")
def register_model(run_id: str = typer.Argument(..., help="Run whose model/ folder holds the weights"),
                   name: str = typer.Option("reviosa", help="Registered model name"),
                   alias: str = typer.Option("candidate", help="Alias for the new version"),
                   tracking_uri: str | None = _URI) -> None:
    """Register the run's model files as a new version and set its alias."""
    from reviosa.tracking.registry import register

    mv = register(_client(tracking_uri), name, run_id, alias=alias)
    typer.echo(f"{name} version {mv.version} @{alias}")


@runs_app.command("promote")
def promote(name: str = typer.Argument("reviosa", help="Registered model name"),
            version: str | None = typer.Option(None, help="Version to promote (default: the candidate)"),
            tracking_uri: str | None = _URI) -> None:
    """Point ``champion`` at a version (default: the current ``candidate``)."""
    from reviosa.tracking.registry import promote as run

    try:
        mv = run(_client(tracking_uri), name, version)
    except LookupError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name} version {mv.version} is now champion")


@runs_app.command("resolve")
def resolve(name: str = typer.Argument("reviosa", help="Registered model name"),
            alias: str = typer.Option("champion", help="Alias to resolve"), tracking_uri: str | None = _URI) -> None:
    """Print the version, run and artifact URI behind ``name@alias``."""
    from reviosa.tracking.registry import resolve as run

    try:
        mv = run(_client(tracking_uri), name, alias)
    except LookupError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name}@{alias}: version {mv.version}, run {mv.run_id}, source {mv.source}")


@runs_app.command("lineage")
def lineage(model: str = typer.Argument(..., help="MODEL, MODEL@ALIAS or MODEL/VERSION (bare: the champion, else the "
                                                  "newest version)"),
            tracking_uri: str | None = _URI) -> None:
    """Print where a registered version comes from: training run, dataset version, code commit, KFP run, scores."""
    from reviosa.tracking.lineage import format_lineage, trace

    try:
        typer.echo(format_lineage(trace(_client(tracking_uri), model)))
    except (LookupError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
