"""``reviosa evaluate``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the evaluate commands (filled in by its module)."""
