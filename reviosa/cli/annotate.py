"""``reviosa annotate ...``: the LLM/VLM annotation pipeline and the human review round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

annotate_app = typer.Typer(help="Build InterRVOS expressions with LLM/VLM stages (resumable), review them.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``annotate`` verb group."""
    app.add_typer(annotate_app, name="annotate")


@annotate_app.command("run")
def run(split: Path = typer.Argument(..., help="Input split: frames, mask tracks, objects (+ scene_graph.json)"),
        out: Path = typer.Option(..., "--out", help="Output split folder (also the resume state)"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML AnnotateConfig"),
        backend: Optional[str] = typer.Option(None, help="offline (scene graph) or openai (HTTP)"),
        text_stages_only: bool = typer.Option(False, "--text-stages-only",
                                              help="Send only stages 2 and 4 to the backend; 1 and 3 offline"),
        base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint, e.g. http://host:8000/v1"),
        model: Optional[str] = typer.Option(None, help="Model name sent with each request"),
        concurrency: Optional[int] = typer.Option(None, help="Requests in flight at most"),
        max_tokens: Optional[int] = typer.Option(None, help="Completion token limit per request"),
        cache_dir: Optional[Path] = typer.Option(None, help="Answer cache (default OUT/.cache/answers)"),
        progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Annotate a split (stages 0-4); rerun the same command to resume a killed run."""
    from reviosa.annotate.config import AnnotateConfig, AnnotateConfigError
    from reviosa.annotate.pipeline import run_annotation
    from reviosa.data.format import DatasetError

    overrides = {"backend": backend, "base_url": base_url, "model": model, "concurrency": concurrency,
                 "max_tokens": max_tokens}
    if text_stages_only:
        overrides["stage_backend"] = {1: "offline", 3: "offline"}
    try:
        if config is not None:
            cfg = AnnotateConfig.from_yaml(config, **overrides)
        else:
            cfg = AnnotateConfig.model_validate({k: v for k, v in overrides.items() if v is not None})
        report = run_annotation(split, out, cfg, cache_dir=cache_dir, progress=progress)
    except (AnnotateConfigError, DatasetError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report, indent=1))


@annotate_app.command("review-export")
def review_export(split: Path = typer.Argument(..., help="Annotated split"),
                  out: Path = typer.Option(..., "--out", help="Folder for <video>/expressions.csv and overlays"),
                  frames: int = typer.Option(3, help="Overlay frames per video")) -> None:
    """Export expressions to one CSV per video plus labelled overlay images for human review."""
    from reviosa.annotate.review import export_review

    typer.echo(f"exported {export_review(split, out, frames=frames)} expressions to {out}")


@annotate_app.command("review-import")
def review_import(split: Path = typer.Argument(..., help="Annotated split, updated in place"),
                  review: Path = typer.Option(..., "--review", help="Folder written by review-export, edited")) -> None:
    """Apply reviewed CSVs (text, actor/target ids, status) back to the split."""
    from reviosa.annotate.review import import_review
    from reviosa.data.format import DatasetError

    try:
        changed = import_review(split, review)
    except DatasetError as err:
        typer.secho(f"invalid review: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"updated {changed} expressions")
