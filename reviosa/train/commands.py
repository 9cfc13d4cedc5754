"""The recipes as commands: ``reviosa train`` / ``reviosa pretrain``, and ``python -m reviosa.train`` for torchrun.

Kept apart from the recipes so that listing the commands imports no torch.
"""

from __future__ import annotations

import json

import typer


def finetune(config: str = typer.Option(..., "--config", help="Training config: shipped name (tiny, 1b), YAML path or "
                                         "s3:// URI"),
             set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                           help="Override a field, dotted: --set model.loss.aml_heads=[] (repeatable)"),
             ablation: str | None = typer.Option(None, "--ablation", help="Table-4 row applied after --set: i, ii, "
                                                "iii or iv (reviosa/train/ablations/)"),
             resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in out/"),
             progress: bool = typer.Option(True, "--progress/--no-progress"),
             print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit")
             ) -> None:
    """Fine-tune ReVIOSa (DeepSpeed LoRA, AML, resumable, MLflow); under torchrun for several processes."""
    from reviosa.config import ConfigError
    from reviosa.train.recipes.finetune import load_config, run

    try:
        cfg = load_config(config, set_, ablation)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set / --ablation") from None
    if print_config:
        typer.echo(cfg.to_yaml(), nl=False)
        return
    summary = run(cfg, resume=resume, progress=progress)
    if summary.get("final"):
        typer.echo(json.dumps({k: summary[k] for k in ("step", "final", "validation", "run_id") if k in summary}))


def pretrain(config: str = typer.Option(..., "--config", help="Pretraining config: shipped name (tiny) or YAML path"),
             set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                           help="Override a field, dotted: --set stages.llm.steps=500 (repeatable)"),
             progress: bool = typer.Option(True, "--progress/--no-progress"),
             print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit"),
             ship: str | None = typer.Option(None, "--ship", metavar="NAME",
                                             help="Then copy the checkpoint into the package as NAME "
                                                  "(reviosa-tiny-base), with its hashes, config and this command"),
             compare: str | None = typer.Option(None, "--compare", metavar="NAME|DIR",
                                                help="Then compare with a shipped base or a pretraining folder: "
                                                     "config, held-out numbers, file hashes (exit 1 if they differ)"),
             tolerance: float = typer.Option(0.0, "--tolerance", min=0.0,
                                             help="Largest held-out difference --compare accepts")
             ) -> None:
    """Pretrain the tiny model's stand-in for InternVL/SAM2 checkpoints on single synthetic frames."""
    from reviosa.config import ConfigError
    from reviosa.model.errors import CheckpointError
    from reviosa.train.config import PretrainConfig
    from reviosa.train.recipes.pretrain import run

    try:
        cfg = PretrainConfig.from_yaml(config, set_)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None
    if print_config:
        typer.echo(cfg.to_yaml(), nl=False)
        return
    record = run(cfg, progress=progress)
    typer.echo(json.dumps(record, indent=1))
    if compare:
        from reviosa.train.recipes.pretrain import compare as compare_with

        try:
            result = compare_with(cfg.out, compare, tolerance)
        except (FileNotFoundError, CheckpointError) as err:
            raise typer.BadParameter(str(err), param_hint="--compare") from None
        typer.echo("\n".join(comparison_lines(compare, result)))
        if not result["ok"]:
            raise typer.Exit(1)
    if ship:
        from reviosa.model import pretrained

        if ship not in pretrained.NAMES:
            raise typer.BadParameter(f"{ship!r} is not a shipped name {list(pretrained.NAMES)}", param_hint="--ship")
        command = " ".join(["reviosa pretrain --config", config, *(f"--set {s}" for s in set_)])
        typer.echo(f"shipped as {ship}: {pretrained.ship(cfg.out, ship, command, record)}")


def comparison_lines(reference: str, result: dict) -> list[str]:
    """A pretraining comparison (:func:`reviosa.train.recipes.pretrain.compare`) as a table to read."""
    lines = [f"compared with {reference} (tolerance {result['tolerance']:g}):", f"  config: {result['config']}",
             f"  {'held-out number':<24}{'made':>9}{'reference':>11}{'diff':>10}"]
    for key, n in result["numbers"].items():
        cells = [f"{v:.5f}" if v is not None else "absent" for v in (n["made"], n["reference"])]
        diff = f"{n['diff']:+.5f}" if n["diff"] is not None else "-"
        lines.append(f"  {key:<24}{cells[0]:>9}{cells[1]:>11}{diff:>10}")
    lines += [f"  {rel}: {state}" for rel, state in result["files"].items()]
    wall = result["wall_s"]
    if wall["made"] is not None and wall["reference"] is not None:
        lines.append(f"  wall time: {wall['made']:.0f} s (reference {wall['reference']:.0f} s)")
    lines.append("the same pretraining" if result["ok"] else "DIFFERENT: another config, or held-out numbers beyond "
                                                             "the tolerance")
    return lines
