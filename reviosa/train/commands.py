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
                                                  "(reviosa-tiny-base), with its hashes, config and this command")
             ) -> None:
    """Pretrain the tiny model's stand-in for InternVL/SAM2 checkpoints on single synthetic frames."""
    from reviosa.config import ConfigError
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
    if ship:
        from reviosa.model import pretrained

        if ship not in pretrained.NAMES:
            raise typer.BadParameter(f"{ship!r} is not a shipped name {list(pretrained.NAMES)}", param_hint="--ship")
        command = " ".join(["reviosa pretrain --config", config, *(f"--set {s}" for s in set_)])
        typer.echo(f"shipped as {ship}: {pretrained.ship(cfg.out, ship, command, record)}")
