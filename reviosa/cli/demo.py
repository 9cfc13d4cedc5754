"""``reviosa demo``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the demo commands (filled in by its module)."""
