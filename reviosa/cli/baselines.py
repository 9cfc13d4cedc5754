"""``reviosa baselines``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the baselines commands (filled in by its module)."""
