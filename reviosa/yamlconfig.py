"""Loading typed (pydantic) configs from YAML with one readable error naming the file and the fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def shipped_or_path(path: str | os.PathLike, shipped_dir: Path, error: type[Exception],
                    what: str = "config") -> Path:
    """``path`` when it is a file, else the shipped ``<shipped_dir>/<name>.yaml``; ``error`` lists the names."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_dir / f"{p.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(f.stem for f in shipped_dir.glob("*.yaml"))
    raise error(f"{path}: no such {what} (shipped: {names})")


def read_yaml_mapping(path: str | os.PathLike, error: type[Exception], what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file; ``error`` names the file when it is unreadable or not a mapping."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: cannot read {what} ({err})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: top level of a {what} must be a mapping of settings, got {type(raw).__name__}")
    return raw


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate_config(cls: type[M], values: dict[str, Any], source: str, error: type[Exception],
                    what: str = "config") -> M:
    """``cls.model_validate(values)``, turning pydantic's error into one ``error`` listing ``field: problem``."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in err.errors())
        raise error(f"{source}: invalid {what}: {fields}") from None


def load_yaml_config(cls: type[M], path: str | os.PathLike, error: type[Exception], what: str = "config",
                     **overrides: Any) -> M:
    """Read ``path``, apply the overrides that are not None (CLI flags win), and validate into ``cls``."""
    raw = read_yaml_mapping(path, error, what)
    given = {k: v for k, v in overrides.items() if v is not None}
    raw.update(given)
    source = f"{path} with overrides {given}" if given else str(path)
    return validate_config(cls, raw, source, error, what)
