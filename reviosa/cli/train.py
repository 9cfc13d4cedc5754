"""``reviosa train``: DeepSpeed LoRA training from a YAML config, resumable, tracked in MLflow."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the train command."""
    app.command("train")(train)


def train(config: str = typer.Option(..., "--config", help="Training YAML (or a shipped name such as tiny)"),
          resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in out/"),
          set_: list[str] = typer.Option([], "--set", help="Override a field: --set steps=20 --set data.train=DIR"),
          progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Train ReVIOSa (LoRA on the LLM, projection and SAM2 decoder); run under torchrun for several processes."""
    import json

    import yaml

    from reviosa.train.config import TrainConfig, TrainConfigError

    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        overrides[key] = yaml.safe_load(value)
    try:
        cfg = TrainConfig.from_yaml(config, **overrides)
    except TrainConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    from reviosa.train.trainer import train as run

    summary = run(cfg, resume=resume, progress=progress)
    if summary.get("final"):
        typer.echo(json.dumps({k: summary[k] for k in ("step", "final", "validation", "run_id") if k in summary}))
