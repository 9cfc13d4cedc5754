"""``reviosa train`` / ``reviosa pretrain``: the recipes' commands (``python -m reviosa.train`` runs the first)."""

from __future__ import annotations

import typer

from reviosa.train import commands


def register(app: typer.Typer) -> None:
    """Attach the train and pretrain commands."""
    app.command("train")(commands.finetune)
    app.command("pretrain")(commands.pretrain)
