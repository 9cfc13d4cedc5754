"""Serving settings: which model, where it may read videos from, and the request limits."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


class ServeConfigError(ValueError):
    """A serving setting is invalid; the message names the field."""


@dataclass
class ServeConfig:
    """One object for the predictor and its server (YAML key ``serve``)."""

    model_uri: str = "/mnt/models"          # KServe's storage initializer puts STORAGE_URI files here
    model_name: str = "reviosa"
    device: str = "cpu"
    http_port: int = 8080
    host: str = "0.0.0.0"                   # in-cluster default; ``reviosa serve`` binds 127.0.0.1
    max_frames: int = 64
    max_bytes: int = 32 * 1024 * 1024       # raw request video / encoded frames, summed
    max_height: int = 1080
    max_width: int = 1920
    max_expression_chars: int = 512
    max_instances: int = 4                  # v1 instances per request
    # URL prefixes a request may name as its video; s3:// and http(s):// only. Empty = URIs refused.
    allowed_url_prefixes: list[str] = field(default_factory=list)
    fetch_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_bytes", "max_height", "max_width", "max_expression_chars", "max_instances",
                     "http_port"):
            if int(getattr(self, name)) < 1:
                raise ServeConfigError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}")
        for prefix in self.allowed_url_prefixes:
            if not prefix.startswith(("s3://", "http://", "https://")):
                raise ServeConfigError(f"`allowed_url_prefixes`: {prefix!r} must start with s3://, http:// or https://")
            if prefix.rstrip("/").count("/") < 2 or prefix.endswith("://"):
                raise ServeConfigError(f"`allowed_url_prefixes`: {prefix!r} must name at least a host or bucket")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None = None, **overrides) -> "ServeConfig":
        """Read ``serve:`` from a YAML file (if given), then apply non-None keyword overrides."""
        raw: dict = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ServeConfigError(f"{path}: no such serving config file")
            doc = yaml.safe_load(path.read_text()) or {}
            raw = doc.get("serve", doc) if isinstance(doc, dict) else {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ServeConfigError(f"unknown serving settings {unknown} (known: {sorted(known)})")
        return cls(**raw)

    def to_yaml(self) -> str:
        """YAML form of the settings."""
        return yaml.safe_dump({"serve": asdict(self)}, sort_keys=False)
