"""What every config-taking command shares: ``--config NAME|PATH``, ``--set KEY=VALUE`` and one error path."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import typer

from reviosa.config import Config, ConfigError

C = TypeVar("C", bound=Config)

SET_HELP = "Override a config field, dotted: --set optim.lr=1e-4 --set data.val=null (repeatable)"


def shorthand(flags: Mapping[str, Any]) -> list[str]:
    """Override strings for the convenience flags that were given (None = not given); a flag is a ``--set``."""
    return [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]


def load_config(cls: type[C], config: str | os.PathLike | None, sets: list[str] | None = None,
                flags: Mapping[str, Any] | None = None) -> C:
    """``cls.from_yaml(config, overrides)`` with the flags first and ``--set`` last; errors become usage errors."""
    try:
        return cls.from_yaml(config, shorthand(flags or {}) + list(sets or []))
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None


def print_config(cfg: Config) -> None:
    """Print the fully resolved config as YAML (for ``--print-config``)."""
    typer.echo(cfg.to_yaml(), nl=False)
