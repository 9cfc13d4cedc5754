"""The one config spine: every reviosa config is a strict, frozen pydantic model loaded from YAML.

A config is loaded from a shipped name (``tiny`` means ``<shipped_dir>/tiny.yaml`` next to the code that reads
it) or a YAML path, then changed by dotted ``key=value`` overrides, the one override syntax of the project: the
CLI's ``--set a.b=c``, a pipeline's ``overrides: list[str]`` and the ablation files all use it. A field whose type
is another config may be written in YAML as that config's shipped name or path (``model: tiny``); it is expanded
before the overrides apply, so ``model.loss.aml_heads=[]`` reaches into it. Every problem is one ``ConfigError``
naming the file (or source) and the field.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A config cannot be read, an override is malformed, or a field is invalid; the message names file and field."""


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` → (``["a", "b"]``, YAML value of ``c``); ``key=`` sets null."""
    key, sep, value = item.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted KEY, e.g. optim.lr=1e-4")
    try:
        return path, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not YAML ({err})") from None


def _config_type(annotation: Any) -> type[Config] | None:
    """The Config subclass a field holds (also inside ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, Config):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, Config)]
        return found[0] if len(found) == 1 else None
    return None


class Config(BaseModel):
    """Base of every reviosa config: unknown keys are errors, instances are immutable, YAML goes in and out.

    Subclasses set ``shipped_dir`` to the folder of their shipped YAML files, so a bare name loads one.
    """

    # protected_namespaces: fields such as ``model`` would otherwise warn (pydantic reserves ``model_``).
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    #: folder holding this config's shipped ``<name>.yaml`` files (None: only paths load)
    shipped_dir: ClassVar[Path | None] = None

    @classmethod
    def shipped(cls) -> list[str]:
        """Names of the shipped configs of this kind."""
        return sorted(p.stem for p in cls.shipped_dir.glob("*.yaml")) if cls.shipped_dir else []

    @classmethod
    def locate(cls, source: str | os.PathLike, relative_to: Path | None = None) -> Path:
        """The YAML file ``source`` names: an existing path (also relative to ``relative_to``), else a shipped name."""
        p = Path(source).expanduser()
        for candidate in ([p] + ([relative_to / p] if relative_to and not p.is_absolute() else [])):
            if candidate.is_file():
                return candidate
        if cls.shipped_dir is not None and p.parent == Path("."):
            shipped = cls.shipped_dir / f"{p.name.removesuffix('.yaml')}.yaml"
            if shipped.is_file():
                return shipped
        raise ConfigError(f"{source}: no such {cls.__name__} file" +
                          (f" or shipped name (shipped: {', '.join(cls.shipped())})" if cls.shipped_dir else ""))

    @classmethod
    def read_raw(cls, source: str | os.PathLike, relative_to: Path | None = None) -> tuple[dict, Path]:
        """The mapping in ``source``'s YAML file with nested config references expanded, and the file's path."""
        path = cls.locate(source, relative_to)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read {cls.__name__} ({err})") from None
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level of a {cls.__name__} must be a mapping of settings, "
                              f"got {type(raw).__name__}")
        return cls._expand(raw, path.parent, str(path)), path

    @classmethod
    def _expand(cls, raw: dict, base: Path | None, source: str) -> dict:
        """``raw`` with every nested-config field given as a name or path replaced by that file's mapping."""
        out = dict(raw)
        for name, field in cls.model_fields.items():
            sub = _config_type(field.annotation)
            if sub is None or name not in out:
                continue
            value = out[name]
            if isinstance(value, (str, os.PathLike)):
                try:
                    out[name] = sub.read_raw(value, base)[0]
                except ConfigError as err:
                    raise ConfigError(f"{source}: field {name}: {err}") from None
            elif isinstance(value, dict):
                out[name] = sub._expand(value, base, source)
        return out

    @classmethod
    def from_yaml(cls, source: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Self:
        """Load a shipped name or YAML path (None: all defaults), then apply ``key=value`` overrides."""
        if source is None:
            return cls.from_dict({}, overrides, source="defaults")
        raw, path = cls.read_raw(source)
        return cls.from_dict(raw, overrides, source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], overrides: Sequence[str] = (), source: str = "config") -> Self:
        """Validate a mapping (nested configs may be names or paths) after applying ``key=value`` overrides."""
        values = cls._expand(dict(raw), None, source)
        for item in overrides:
            path, value = parse_override(item)
            values = cls._set(values, path, value, item, source)
        if overrides:
            source = f"{source} with overrides {list(overrides)}"
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"{source}: invalid {cls.__name__}: {fields}") from None

    @classmethod
    def _set(cls, values: dict, path: list[str], value: Any, item: str, source: str) -> dict:
        """``values`` with ``path`` set to ``value``; a section not written yet starts from the field's default."""
        values = cls._expand(values, None, source)
        head, rest = path[0], path[1:]
        if not rest:
            return cls._expand({**values, head: value}, None, source)
        field = cls.model_fields.get(head)
        node = values.get(head)
        if node is None and field is not None and not field.is_required():
            node = _plain(field.get_default(call_default_factory=True))
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: override {item!r}: {head} is a value ({node!r}), not a section")
        sub = _config_type(field.annotation) if field is not None else None
        if sub is not None:
            return {**values, head: sub._set(node, rest, value, item, source)}
        return {**values, head: _set_plain(node, rest, value, item, source)}

    def with_overrides(self, overrides: Sequence[str], source: str = "config") -> Self:
        """A validated copy with ``key=value`` overrides applied."""
        return type(self).from_dict(self.model_dump(mode="json"), overrides, source)

    def to_yaml(self) -> str:
        """The config as YAML text (``from_yaml`` reads it back to an equal config)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _plain(value: Any) -> Any:
    """A field default as plain YAML-like data."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _set_plain(node: dict, path: list[str], value: Any, item: str, source: str) -> dict:
    """A copy of a plain mapping (a dict-typed field) with ``path`` set."""
    out = dict(node)
    if len(path) == 1:
        out[path[0]] = value
        return out
    child = out.get(path[0])
    child = {} if child is None else child
    if not isinstance(child, dict):
        raise ConfigError(f"{source}: override {item!r}: {path[0]} is a value ({child!r}), not a section")
    out[path[0]] = _set_plain(child, path[1:], value, item, source)
    return out
