"""``reviosa baseline``: reference predictors that write predictions in the evaluator's layout or as results.json."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the ``baseline`` command."""
    app.command("baseline")(baseline)


def baseline(name: str = typer.Argument(..., help="oracle | empty | largest-moving"),
             data: Path = typer.Option(..., "--data", help="Split folder"),
             out: Path = typer.Option(..., "--out", help="Prediction folder (<video>/<exp>/actor|target/*.png; "
                                      "with --format official: <out>/results.json, or OUT itself if it ends in .json)"),
             workers: int = typer.Option(0, help="Worker processes (0 = all cores)"),
             fmt: str = typer.Option("png", "--format", help="png | official (one results.json as official "
                                     "inference writes it)")) -> None:
    """Run a baseline predictor over every expression of a split."""
    from reviosa.baselines.predictors import FORMATS, PREDICTORS, run_baseline
    from reviosa.data.format import DatasetError
    from reviosa.data.names import UnsafeName
    from reviosa.data.video import VideoDecodeError
    from reviosa.evaluate.official import results_path

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    if name not in PREDICTORS:
        raise typer.BadParameter(f"unknown baseline {name!r}; choose one of {', '.join(sorted(PREDICTORS))}",
                                 param_hint="NAME")
    try:
        n = run_baseline(name, data, out, workers=workers or None, fmt=fmt)
    except DatasetError as err:
        typer.secho(f"invalid: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except (VideoDecodeError, UnsafeName, OSError) as err:  # unreadable frames, a link out of --out, a full disk
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    where = results_path(out) if fmt == "official" else out
    typer.echo(f"{name}: wrote predictions for {n} expressions to {where}")
