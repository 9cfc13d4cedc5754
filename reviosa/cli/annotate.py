"""``reviosa annotate ...``: the LLM/VLM annotation pipeline and the human review round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from reviosa.cli.options import SET_HELP, load_config

annotate_app = typer.Typer(help="Build InterRVOS expressions with LLM/VLM stages (resumable), review them.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``annotate`` verb group."""
    app.add_typer(annotate_app, name="annotate")


_CONFIG = typer.Option("default", "--config", help="AnnotateConfig: shipped name or YAML path")
_SET = typer.Option([], "--set", help=SET_HELP)


@annotate_app.command("run")
def run(split: Path = typer.Argument(..., help="Input split: frames, mask tracks, objects (+ scene_graph.json)"),
        out: Path = typer.Option(..., "--out", help="Output split folder (also the resume state)"),
        config: str = _CONFIG,
        set_: list[str] = _SET,
        backend: Optional[str] = typer.Option(None, help="offline (scene graph) or openai (HTTP) (--set backend=)"),
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
    from reviosa.annotate.pipeline import run_annotation
    from reviosa.data.format import DatasetError

    flags = {"backend": backend, "base_url": base_url, "model": model, "concurrency": concurrency,
             "max_tokens": max_tokens, "stage_backend": {1: "offline", 3: "offline"} if text_stages_only else None,
             **_mask_track_flags(prompts, sam2, sam2_config, device)}
    cfg = _annotate_config(config, set_, flags)
    try:
        report = run_annotation(split, out, cfg, cache_dir=cache_dir, progress=progress)
    except (DatasetError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report, indent=1))


def _mask_track_flags(prompts: Optional[Path], sam2: Optional[str], sam2_config: Optional[str],
                      device: Optional[str]) -> dict:
    """The stage-0 convenience flags as the ``mask_tracks.*`` fields they stand for."""
    return {"mask_tracks.prompts": None if prompts is None else str(prompts), "mask_tracks.sam2_checkpoint": sam2,
            "mask_tracks.sam2_config": sam2_config, "mask_tracks.device": device}


def _annotate_config(config: str, sets: list[str], flags: dict):
    """The AnnotateConfig of ``--config``, the flags and ``--set``; ``tiny`` SAM2 without a checkpoint means random
    weights, and says so."""
    from reviosa.annotate.config import AnnotateConfig

    cfg = load_config(AnnotateConfig, config, sets, flags)
    tracks = cfg.mask_tracks
    if tracks.sam2_config == "tiny" and not tracks.sam2_checkpoint and not tracks.allow_random_weights:
        typer.secho("warning: tiny SAM2 with random weights: tracks are meaningless except copied mask prompts",
                    fg="yellow", err=True)
        cfg = cfg.with_overrides(["mask_tracks.allow_random_weights=true"], source="tiny SAM2 without a checkpoint")
    return cfg


@annotate_app.command("track")
def track(split: Path = typer.Argument(..., help="Split whose prompted objects lack mask tracks (updated in place)"),
          prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompts file (default SPLIT/prompts.json)"),
          sam2: Optional[str] = typer.Option(None, "--sam2", help="SAM2 checkpoint (.pt/.safetensors, path or s3://)"),
          sam2_config: Optional[str] = typer.Option(None, "--sam2-config",
                                                    help="large (default) | tiny (random weights) | YAML"),
          device: Optional[str] = typer.Option(None, "--device", help="Torch device, e.g. cuda (default cpu)"),
          config: str = typer.Option("default", "--config", help="AnnotateConfig (its mask_tracks section): "
                                     "shipped name or YAML path"),
          set_: list[str] = _SET,
          progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Stage 0 alone: SAM2 mask tracks for prompted objects, written into SPLIT/mask_dict.json (resumable)."""
    from reviosa.annotate.mask_tracks import TRACKS_DIR, track_split
    from reviosa.annotate.prompts_file import PROMPTS_FILE, load_prompts
    from reviosa.data.format import DatasetError, InterRVOSDataset

    cfg = _annotate_config(config, set_, _mask_track_flags(prompts, sam2, sam2_config, device)).mask_tracks
    try:
        ds = InterRVOSDataset.load(split)
        path = Path(cfg.prompts) if cfg.prompts else split / PROMPTS_FILE
        tracks, counts = track_split(ds, load_prompts(path), cfg, split / TRACKS_DIR, progress=progress)
        ds.mask_dict.update(tracks)
        ds.save()
    except (DatasetError, ValueError) as err:
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
    from reviosa.data.format import DatasetError
    from reviosa.data.names import UnsafeName
    from reviosa.data.video import VideoDecodeError

    try:
        n = export_review(split, out, frames=frames)
    except (DatasetError, UnsafeName, VideoDecodeError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported {n} expressions to {out}")


@annotate_app.command("review-import")
def review_import(split: Path = typer.Argument(..., help="Annotated split, updated in place"),
                  review: Path = typer.Option(..., "--review", help="Folder written by review-export, edited")) -> None:
    """Apply reviewed CSVs (text, actor/target ids, status) back to the split."""
    from reviosa.annotate.review import import_review
    from reviosa.data.format import DatasetError
    from reviosa.data.names import UnsafeName

    try:
        changed = import_review(split, review)
    except (DatasetError, UnsafeName) as err:
        typer.secho(f"invalid review: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"updated {changed} expressions")
