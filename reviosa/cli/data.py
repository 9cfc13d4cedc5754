"""``reviosa data ...``: dataset generation, validation, statistics, layout conversion and clip extraction."""

from __future__ import annotations

from pathlib import Path

import typer

from reviosa.cli.options import SET_HELP, load_config

data_app = typer.Typer(help="InterRVOS datasets: validate, inspect, convert layouts, extract clips.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the ``data`` verb group."""
    app.add_typer(data_app, name="data")


@data_app.command("validate")
def validate(split: Path = typer.Argument(..., help="Split folder with meta_expressions.json"),
             no_frames: bool = typer.Option(False, "--no-frames", help="Skip checking that frame files exist")) -> None:
    """Load a split and check every reference, frame file and mask (every RLE is decoded)."""
    from reviosa.data.format import DatasetError, InterRVOSDataset

    try:
        ds = InterRVOSDataset.load(split, check_frames=not no_frames, decode_masks=True)
    except DatasetError as err:
        typer.secho(f"invalid: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    stats = ds.stats()
    line = (f"ok: {stats['videos']} videos, {stats['expressions']} expressions ({ds.layout} layout, "
            f"{stats['expressions_with_target']} with a target)")
    if ds.role_split is not None:
        line += (f"; {ds.role_split.meta_file}: {stats['role_expressions']} expressions for the Actor score, "
                 f"{stats['role_expressions_with_target']} with a target for the Target score")
    typer.echo(line)


@data_app.command("stats")
def stats(split: Path = typer.Argument(..., help="Split folder")) -> None:
    """Print counts of videos, frames, objects and expressions per type."""
    from reviosa.data.format import DatasetError, InterRVOSDataset

    try:
        ds = InterRVOSDataset.load(split, check_frames=False)
    except DatasetError as err:
        typer.secho(f"invalid: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    for k, v in ds.stats().items():
        typer.echo(f"{k:28s} {v}")


@data_app.command("convert")
def convert(src: Path = typer.Argument(..., help="Split folder in either layout"),
            dst: Path = typer.Argument(..., help="New split folder (must not exist or be empty)"),
            to: str = typer.Option(..., "--to", help="official | reviosa"),
            frames: str = typer.Option("link", "--frames",
                                       help="link (hard links; copies across filesystems) | copy | skip"),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty DST")) -> None:
    """Rewrite a split in the official InterRVOS or the reviosa layout; every field and mask bit is kept."""
    from reviosa.data.convert import convert_split
    from reviosa.data.format import LAYOUTS, DatasetError

    if to not in LAYOUTS:
        raise typer.BadParameter(f"must be one of {', '.join(LAYOUTS)}", param_hint="--to")
    try:
        ds = convert_split(src, dst, to, frames=frames, overwrite=overwrite)
    except DatasetError as err:
        typer.secho(f"invalid: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except (ValueError, FileExistsError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    stats = ds.stats()
    extra = f" and {ds.role_split.meta_file}" if ds.role_split is not None else ""
    typer.echo(f"wrote {dst} in the {to} layout: {stats['videos']} videos, {stats['expressions']} expressions"
               f"{extra}; round trip checked")


@data_app.command("extract-clips")
def extract_clips(video: list[Path] = typer.Argument(..., help="Source video files"),
                  out: Path = typer.Option(..., "--out", help="Folder for <name>_bNNN/<frame>.jpg clips"),
                  config: str = typer.Option("paper", "--config", help="ClipConfig: shipped name or YAML path"),
                  set_: list[str] = typer.Option([], "--set", help=SET_HELP),
                  bin_frames: int | None = typer.Option(None, help="Bin length in frames (--set bin_frames=N)"),
                  clip_frames: int | None = typer.Option(None, help="Frames kept from the start of each bin"),
                  bins: str | None = typer.Option(None, help="'first_last' (paper) or 'all'"),
                  min_clip_frames: int | None = typer.Option(None, help="Drop clips shorter than this")) -> None:
    """Cut clips from long videos as the paper's Appendix D.3 (resumable)."""
    from reviosa.data.clips import ClipConfig
    from reviosa.data.clips import extract_clips as run
    from reviosa.data.names import UnsafeName
    from reviosa.data.video import VideoDecodeError

    cfg = load_config(ClipConfig, config, set_, {"bin_frames": bin_frames, "clip_frames": clip_frames, "bins": bins,
                                                 "min_clip_frames": min_clip_frames})
    for v in video:
        try:
            clips = run(v, out, cfg)
        except (VideoDecodeError, UnsafeName) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(1) from None
        for name, frames in clips.items():
            typer.echo(f"{name}: {len(frames)} frames")
