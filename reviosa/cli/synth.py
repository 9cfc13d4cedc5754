"""``reviosa data synth``: generate synthetic InterRVOS splits (see :mod:`reviosa.data.synthetic`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from reviosa.cli.data import data_app
from reviosa.cli.options import SET_HELP, load_config


def register(app: typer.Typer) -> None:
    """The command joins the ``data`` group when this module is imported; nothing else to attach."""


def _parse_size(size: str) -> tuple[int, int]:
    parts = size.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise typer.BadParameter(f"expected N or HxW (e.g. 128 or 96x160), got {size!r}") from None
    if len(dims) == 1:
        return dims[0], dims[0]
    if len(dims) == 2:
        return dims[0], dims[1]
    raise typer.BadParameter(f"expected N or HxW (e.g. 128 or 96x160), got {size!r}")


def _parse_counts(videos: str, names: list[str]) -> list[int]:
    try:
        counts = [int(v) for v in videos.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected an integer or a comma list of integers, got {videos!r}") from None
    want = max(1, len(names))
    if len(counts) == 1 and want > 1:
        counts = counts * want
    if len(counts) != want:
        raise typer.BadParameter(f"{len(counts)} video counts for {want} split(s) {names or ''}".rstrip())
    if any(c < 1 for c in counts):
        raise typer.BadParameter(f"video counts must be >= 1, got {videos!r}")
    return counts


@data_app.command("synth")
def synth(out: Path = typer.Option(..., "--out", help="Split folder (or parent folder with --split-names)"),
          videos: str = typer.Option("200", "--videos", help="Videos per split: N, or N1,N2 with --split-names"),
          seed: int = typer.Option(0, "--seed", help="Split seed: same seed, byte-identical output"),
          config: str = typer.Option("default", "--config", help="SyntheticConfig: shipped name or YAML path"),
          set_: list[str] = typer.Option([], "--set", help=SET_HELP),
          frames: int | None = typer.Option(None, "--frames", help="Frames per video (--set frames=N)"),
          size: str | None = typer.Option(None, "--size", help="Frame size N or HxW (--set height=H --set width=W)"),
          split_names: str | None = typer.Option(None, "--split-names",
                                                 help="Comma list, e.g. train,val: writes OUT/<name>/ per split"),
          workers: int = typer.Option(0, "--workers", min=0,
                                      help="Processes rendering videos in parallel (0: one per CPU, at most 4)"),
          quiet: bool = typer.Option(False, "--quiet", help="No progress bar")) -> None:
    """Generate a synthetic interaction-world split with exact masks, scene graphs and expressions."""
    from reviosa.data.synthetic import SyntheticConfig, generate_split, split_stats

    names = [n.strip() for n in split_names.split(",")] if split_names else []
    if any(not n or "/" in n or n.startswith(".") for n in names) or len(set(names)) != len(names):
        raise typer.BadParameter(f"split names must be distinct plain folder names, got {split_names!r}")
    counts = _parse_counts(videos, names)
    flags: dict[str, object] = {"frames": frames}
    if size is not None:
        flags["height"], flags["width"] = _parse_size(size)
    cfg = load_config(SyntheticConfig, config, set_, flags)
    if workers == 0:
        workers = max(1, min(os.cpu_count() or 1, 4))
    plan = list(zip(names, counts)) if names else [("", counts[0])]
    for name, n in plan:
        root = out / name if name else out
        ds = generate_split(root, cfg, n, seed, split=name, workers=workers, progress=not quiet)
        typer.echo(f"{root}: {cfg.frames} frames of {cfg.height}x{cfg.width}, seed {seed}")
        for k, v in split_stats(ds).items():
            typer.echo(f"  {k:28s} {v}")
