"""``reviosa evaluate``: score a prediction folder or an official results.json with the InterRVOS protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from reviosa.cli.options import SET_HELP, load_config


def register(app: typer.Typer) -> None:
    """Attach the ``evaluate`` command."""
    app.command("evaluate")(evaluate)


def evaluate(
    data: Path = typer.Option(..., "--data", help="Split folder (meta_expressions.json, mask_dict.json, frames)"),
    predictions: Path = typer.Option(..., "--predictions",
                                     help="Prediction folder (<video>/<exp_id>/actor|target/<frame>.png), an "
                                     "official results.json, or a folder of results_pid_<k>.json (merged)"),
    out: Path | None = typer.Option(None, "--out", help="Output folder [default: <predictions>-eval beside it]"),
    config: str = typer.Option("default", "--config", help="EvalConfig: shipped name or YAML path"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (0 = all cores); --set workers=N"),
    bound_th: float | None = typer.Option(None, "--bound-th", help="F tolerance (fraction of diagonal, or px >= 1)"),
    name: str | None = typer.Option(None, "--name", help="Method name in the table [default: predictions folder]"),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar"),
) -> None:
    """J, F, J&F for InterRVOS-Actor, InterRVOS-Target and RVOS; writes CSV, JSON and a J&F histogram."""
    from reviosa.data.format import DatasetError, InterRVOSDataset
    from reviosa.data.video import VideoDecodeError
    from reviosa.evaluate.config import EvalConfig
    from reviosa.evaluate.predictions import PredictionError
    from reviosa.evaluate.protocol import evaluate_split
    from reviosa.evaluate.report import format_table, write_outputs

    cfg = load_config(EvalConfig, config, set_, {"workers": workers, "bound_th": bound_th, "progress": progress})
    try:
        ds = InterRVOSDataset.load(data)
    except DatasetError as err:
        typer.echo(f"error: invalid dataset: {err}", err=True)
        raise typer.Exit(2) from None
    if not predictions.exists():
        typer.echo(f"error: predictions {predictions} do not exist", err=True)
        raise typer.Exit(2)
    try:
        result = evaluate_split(ds, predictions, cfg)
    except (PredictionError, DatasetError, VideoDecodeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    resolved = predictions.resolve()
    # A results.json is named after its folder: "results" says nothing about the method.
    label = resolved.name if resolved.is_dir() else resolved.parent.name
    out = out or resolved.parent / f"{resolved.name if resolved.is_dir() else resolved.stem}-eval"
    try:
        paths = write_outputs(result, out)
    except OSError as err:
        typer.echo(f"error: cannot write the results to {out}: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_table(result, name or label))
    typer.echo(f"predictions read: {result.predictions}")
    shown = 20
    for m in result.missing[:shown]:
        what = ("whole role (folder or results.json entry), scored J = F = 0" if m.whole_role
                else f"{len(m.frames)} frame(s) scored empty")
        typer.echo(f"missing: {m.name} ({what})", err=True)
    if len(result.missing) > shown:
        typer.echo(f"missing: ... {len(result.missing) - shown} more, all named in {paths['json']}", err=True)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
