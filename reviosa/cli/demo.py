"""``reviosa demo``: the embedded default, the end-to-end pipeline on this machine (no weights, no cluster)."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the ``demo`` command."""
    app.command("demo")(demo)


def demo(out: Path = typer.Option(Path("outputs/demo"), "--out", help="Folder for everything the run writes"),
         train_videos: int = typer.Option(24, "--train-videos", min=1, help="Synthetic training videos"),
         val_videos: int = typer.Option(4, "--val-videos", min=1, help="Held-out synthetic videos"),
         steps: int = typer.Option(300, "--steps", min=1, help="Training steps of the tiny model"),
         seed: int = typer.Option(0, "--seed", help="Seed of the synthetic world and of training"),
         keep_services: bool = typer.Option(False, "--keep-services", help="Leave S3 and MLflow running")) -> None:
    """End-to-end pipeline locally: S3 + MLflow, synthetic videos, annotate, snapshot, train, evaluate, serve."""
    from reviosa.pipelines.demo import DemoConfig, run_end_to_end

    t0 = time.perf_counter()
    cfg = DemoConfig(train_videos=train_videos, val_videos=val_videos, steps=steps, seed=seed,
                     keep_services=keep_services)
    res = run_end_to_end(out, cfg, log=typer.echo)
    typer.secho(f"\nInterRVOS on {val_videos} held-out synthetic videos (J&F x100)", bold=True)
    header = f"{'method':28s} {'Actor J&F':>10s} {'Target J&F':>11s} {'RVOS J&F':>9s}"
    typer.echo(header)
    typer.echo("-" * len(header))
    rows = [(f"ReVIOSa-tiny ({steps} steps)", res.metrics), *res.baselines.items()]
    for name, s in rows:
        cell = lambda k: f"{100 * s[k]:.1f}" if k in s else "-"  # noqa: E731
        typer.echo(f"{name:28s} {cell('actor_JF'):>10s} {cell('target_JF'):>11s} {cell('rvos_JF'):>9s}")
    typer.echo(f"\nserved answer ({res.served.get('url')}): {res.served.get('text')!r}, actor mask on "
               f"{res.served.get('actor_frames_with_mask')}/{res.served.get('frames')} frames")
    typer.echo(f"registered model: {cfg.model_name} v{res.model_version} (alias candidate)")
    typer.echo(f"MLflow: {res.tracking_uri}" + ("" if keep_services else
                                                 " (stopped; rerun with --keep-services to browse it)"))
    typer.echo(f"pipeline artefacts: {res.pipeline_root}")
    typer.echo(f"dataset versions: git -C {res.data_repo} tag --list 'data-v*'")
    typer.echo(f"baseline reports: {Path(res.out) / 'baselines' / 'eval'}/<method>/")
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s {res.seconds}")
