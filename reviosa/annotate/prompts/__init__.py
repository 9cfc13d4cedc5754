"""Versioned prompt templates (``<name>.<version>.txt``, ``string.Template`` syntax), shipped as package data."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from string import Template


@lru_cache(maxsize=None)
def load_prompt(name: str, version: str) -> Template:
    """The template ``<name>.<version>.txt``; a missing file raises ``FileNotFoundError`` naming it."""
    path = resources.files(__package__) / f"{name}.{version}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name}.{version}.txt is not shipped with reviosa.annotate.prompts")
    return Template(path.read_text(encoding="utf-8"))


def render(name: str, version: str, **values: object) -> str:
    """Fill a template; a placeholder without a value raises ``KeyError``."""
    return load_prompt(name, version).substitute({k: str(v) for k, v in values.items()}).strip()
