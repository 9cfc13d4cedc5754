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
        prompts: Optional[Path] = typer.Option(None, "--prompts", help="SAM2 prompts (default SPLIT/prompts.json)"),
        sam2: Optional[str] = typer.Option(None, "--sam2", help="SAM2 checkpoint (.pt/.safetensors, path or s3://)"),
        sam2_config: Optional[str] = typer.Option(None, "--sam2-config", help="large | tiny (random) | YAML file"),
        device: Optional[str] = typer.Option(None, "--device", help="Torch device for SAM2 tracking"),
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
        cfg = _with_tracking(cfg, prompts, sam2, sam2_config, device)
        report = run_annotation(split, out, cfg, cache_dir=cache_dir, progress=progress)
    except (AnnotateConfigError, DatasetError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report, indent=1))


def _with_tracking(cfg, prompts: Optional[Path], sam2: Optional[str], sam2_config: Optional[str],
                   device: Optional[str]):
    """``cfg`` with the tracking flags applied; ``tiny`` without a checkpoint means random weights, said aloud."""
    from reviosa.annotate.config import AnnotateConfig

    tracking = cfg.tracking.model_dump()
    tracking.update({k: v for k, v in {"prompts": None if prompts is None else str(prompts), "sam2_checkpoint": sam2,
                                       "sam2_config": sam2_config, "device": device}.items() if v is not None})
    if tracking["sam2_config"] == "tiny" and not tracking["sam2_checkpoint"] and not tracking["allow_random_weights"]:
        tracking["allow_random_weights"] = True
        if prompts is not None or sam2_config is not None:
            typer.secho("warning: tiny SAM2 with random weights: tracks are meaningless except copied mask prompts",
                        fg="yellow", err=True)
    return AnnotateConfig.model_validate({**cfg.model_dump(), "tracking": tracking})


@annotate_app.command("track")
def track(split: Path = typer.Argument(..., help="Split whose prompted objects lack mask tracks (updated in place)"),
          prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompts file (default SPLIT/prompts.json)"),
          sam2: Optional[str] = typer.Option(None, "--sam2", help="SAM2 checkpoint (.pt/.safetensors, path or s3://)"),
          sam2_config: str = typer.Option("large", "--sam2-config", help="large | tiny (random weights) | YAML"),
          device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cuda"),
          config: Optional[Path] = typer.Option(None, "--config", help="YAML AnnotateConfig (its 'tracking')"),
          progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Stage 0 alone: SAM2 mask tracks for prompted objects, written into SPLIT/mask_dict.json (resumable)."""
    from reviosa.annotate.config import AnnotateConfig, AnnotateConfigError
    from reviosa.annotate.prompts_file import PROMPTS_FILE, load_prompts
    from reviosa.annotate.tracking import TRACKS_DIR, track_split
    from reviosa.data.format import DatasetError, InterRVOSDataset

    try:
        cfg = AnnotateConfig.from_yaml(config) if config is not None else AnnotateConfig()
        cfg = _with_tracking(cfg, prompts, sam2, sam2_config, device)
        ds = InterRVOSDataset.load(split)
        path = Path(cfg.tracking.prompts) if cfg.tracking.prompts else split / PROMPTS_FILE
        tracks, counts = track_split(ds, load_prompts(path), cfg.tracking, split / TRACKS_DIR, progress=progress)
        ds.mask_dict.update(tracks)
        ds.save()
    except (AnnotateConfigError, DatasetError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(counts, indent=1))


@annotate_app.command("vidor-prompts")
def vidor_prompts(annotations: list[Path] = typer.Argument(..., help="VidOR annotation JSON files, one per video"),
                  out: Path = typer.Option(..., "--out", help="prompts.json to write")) -> None:
    """First-appearance box prompts from VidOR ``trajectories`` (video name = ``video_id``, object id = ``tid``)."""
    from reviosa.annotate.prompts_file import prompts_from_vidor, save_prompts

    prompts = {}
    for path in annotations:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            prompts[str(raw.get("video_id", path.stem))] = prompts_from_vidor(raw)
        except (OSError, ValueError, KeyError, TypeError) as err:
            typer.secho(f"error: {path}: {err}", fg="red", err=True)
            raise typer.Exit(1) from None
    save_prompts(out, prompts)
    typer.echo(f"wrote prompts for {sum(map(len, prompts.values()))} objects in {len(prompts)} videos to {out}")


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
