"""``reviosa demo``: the embedded default run on the synthetic world, no weights or services needed."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the ``demo`` command."""
    app.command("demo")(demo)


def demo(out: Path = typer.Option(Path("outputs/demo"), "--out", help="Folder for the split, predictions, reports"),
         videos: int = typer.Option(40, help="Synthetic videos in the evaluation split"),
         seed: int = typer.Option(0, help="Seed of the synthetic world"),
         workers: int = typer.Option(0, help="Worker processes (0 = all cores)")) -> None:
    """Generate a synthetic split, run the baselines on it and evaluate them with the InterRVOS protocol."""
    from reviosa.baselines.predictors import PREDICTORS, run_baseline
    from reviosa.data.synthetic import generate_split, load_config, split_stats
    from reviosa.evaluate.config import EvalConfig
    from reviosa.evaluate.protocol import evaluate_split
    from reviosa.evaluate.report import write_outputs

    start = time.perf_counter()
    out = out.resolve()
    split_dir = out / "synthetic-val"
    typer.secho(f"[1/3] synthetic world: {videos} videos -> {split_dir}", bold=True)
    ds = generate_split(split_dir, load_config(), videos, seed, split="val", workers=max(1, workers or 2))
    stats = split_stats(ds)
    typer.echo(f"      {stats['videos']} videos, {stats['expressions']} expressions "
               f"({stats['expressions_interaction']} interaction, {stats['expressions_with_target']} with a target)")
    rows = []
    cfg = EvalConfig(workers=workers, progress=True)
    for i, name in enumerate(PREDICTORS, start=1):
        pred = out / "predictions" / name
        typer.secho(f"[2/3] baseline {i}/{len(PREDICTORS)}: {name} -> {pred}", bold=True)
        run_baseline(name, split_dir, pred, workers=workers or None)
        result = evaluate_split(ds, pred, cfg)
        write_outputs(result, out / "eval" / name)
        rows.append((name, result.summary, len(result.missing)))
    typer.secho("[3/3] InterRVOS evaluation (J&F x100; J / F in the per-method reports)", bold=True)
    header = f"{'method':16s} {'Actor J&F':>10s} {'Target J&F':>11s} {'RVOS J&F':>9s} {'missing':>8s}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for name, s, missing in rows:
        cell = lambda k: f"{100 * s[k]:.1f}" if k in s else "-"  # noqa: E731
        typer.echo(f"{name:16s} {cell('actor_JF'):>10s} {cell('target_JF'):>11s} {cell('rvos_JF'):>9s} {missing:>8d}")
    typer.echo(f"\nreports: {out / 'eval'}/<method>/ (results.json, per_expression.csv, jf_hist.png)")
    typer.echo(f"done in {time.perf_counter() - start:.1f} s")
