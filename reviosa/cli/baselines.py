"""``reviosa baseline``: reference predictors that write predictions in the evaluator's layout."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the ``baseline`` command."""
    app.command("baseline")(baseline)


def baseline(name: str = typer.Argument(..., help="oracle | empty | largest-moving"),
             data: Path = typer.Option(..., "--data", help="Split folder"),
             out: Path = typer.Option(..., "--out", help="Prediction folder (<video>/<exp>/actor|target/*.png)"),
             workers: int = typer.Option(0, help="Worker processes (0 = all cores)")) -> None:
    """Run a baseline predictor over every expression of a split."""
    from reviosa.baselines.predictors import run_baseline

    n = run_baseline(name, data, out, workers=workers or None)
    typer.echo(f"{name}: wrote predictions for {n} expressions to {out}")
