"""``reviosa demo``: the embedded default, the end-to-end pipeline on this machine (no weights, no cluster)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from reviosa.cli.options import SET_HELP, load_config


def register(app: typer.Typer) -> None:
    """Attach the ``demo`` command."""
    app.command("demo")(demo)


def demo(out: Path = typer.Option(Path("outputs/demo"), "--out", help="Folder for everything the run writes"),
         config: str = typer.Option("demo", "--config", help="DemoConfig: shipped name or YAML path"),
         set_: list[str] = typer.Option([], "--set", help=SET_HELP),
         train_videos: int | None = typer.Option(None, "--train-videos", min=1, help="Synthetic training videos"),
         val_videos: int | None = typer.Option(None, "--val-videos", min=1, help="Held-out synthetic videos"),
         steps: int | None = typer.Option(None, "--steps", min=1, help="Training steps of the tiny model"),
         seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic world and of training"),
         keep_services: bool = typer.Option(False, "--keep-services", help="Leave S3 and MLflow running"),
         verbose: bool = typer.Option(False, "--verbose", "-v",
                                      help="Print every step's output (KFP, DeepSpeed, MLflow, ...) here instead of "
                                           "in <out>/demo.log")) -> None:
    """End-to-end pipeline locally: S3 + MLflow, synthetic videos, annotate, snapshot, train, evaluate, serve."""
    from reviosa.pipelines.demo import LOG_NAME, DemoConfig, DemoFailed, run_with_stages

    t0 = time.perf_counter()
    cfg = load_config(DemoConfig, config, set_, {"train_videos": train_videos, "val_videos": val_videos,
                                                 "steps": steps, "seed": seed, "keep_services": keep_services or None})
    try:
        res = run_with_stages(out, cfg, verbose=verbose)
    except DemoFailed as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.secho(f"\nInterRVOS on {cfg.val_videos} held-out synthetic videos (J&F x100)", bold=True)
    header = f"{'method':28s} {'Actor J&F':>10s} {'Target J&F':>11s} {'RVOS J&F':>9s}"
    typer.echo(header)
    typer.echo("-" * len(header))
    rows = [(f"ReVIOSa-tiny ({cfg.steps} steps)", res.metrics), *res.baselines.items()]
    # fine-tuned from the shipped pretrained base (reviosa-tiny-base), answers generated, not teacher-forced
    for name, s in rows:
        cell = lambda k: f"{100 * s[k]:.1f}" if k in s else "-"  # noqa: E731
        typer.echo(f"{name:28s} {cell('actor_JF'):>10s} {cell('target_JF'):>11s} {cell('rvos_JF'):>9s}")
    if "answer_form_acc" in res.metrics:
        typer.echo(f"\nReVIOSa's generated answers: {100 * res.metrics['answer_form_acc']:.1f} % have the right form "
                   "([SEG_TAR] exactly when the expression has a target)")
    typer.echo(f"\nserved answer ({res.served.get('url')}): {res.served.get('text')!r}, actor mask on "
               f"{res.served.get('actor_frames_with_mask')}/{res.served.get('frames')} frames")
    typer.echo(f"registered model: {cfg.model_name} v{res.model_version} (alias candidate), trained on dataset version "
               f"{res.data_version}")
    typer.echo(f"MLflow: {res.tracking_uri}" + ("" if cfg.keep_services else
                                                 " (stopped; rerun with --keep-services to browse it)"))
    if cfg.keep_services:
        typer.echo(f"how it was made: reviosa runs lineage {cfg.model_name}@candidate")
        typer.echo(f"MLflow and S3 keep running: stop them with `reviosa services down` (or `reviosa services down "
                   f"--state-dir {res.stack}` from anywhere)")
    typer.echo(f"pipeline artefacts: {res.pipeline_root}")
    typer.echo(f"dataset versions: git -C {res.data_repo} tag --list 'data-v*'")
    typer.echo(f"baseline reports: {Path(res.out) / 'baselines' / 'eval'}/<method>/")
    if not verbose:
        typer.echo(f"full log: {Path(res.out) / LOG_NAME}")
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s {res.seconds}")
