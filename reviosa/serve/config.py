"""Serving settings: which model, where it may read videos from, and the request limits (``configs/default.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from reviosa.config import Config


class ServeConfig(Config):
    """One object for the predictor and its server."""

    shipped_dir = Path(__file__).with_name("configs")

    model_uri: str = Field("/mnt/models", description="checkpoint folder or s3:// URI; KServe's storage initializer "
                           "puts STORAGE_URI's files in /mnt/models")
    model_name: str = Field("reviosa", min_length=1, description="the model's name in the URLs")
    device: str = "cpu"
    http_port: int = Field(8080, ge=1, le=65535)
    host: str = Field("0.0.0.0", description="bind address: in-cluster default; `reviosa serve` binds 127.0.0.1")
    max_frames: int = Field(64, ge=1)
    max_bytes: int = Field(32 * 1024 * 1024, ge=1, description="raw request video / encoded frames, summed")
    max_height: int = Field(1080, ge=1)
    max_width: int = Field(1920, ge=1)
    max_expression_chars: int = Field(512, ge=1)
    max_instances: int = Field(4, ge=1, description="v1 instances per request")
    allowed_url_prefixes: list[str] = Field([], description="URL prefixes a request may name as its video (s3://, "
                                            "http(s):// only); empty = URIs refused")
    fetch_timeout_s: float = Field(30.0, gt=0)

    @field_validator("allowed_url_prefixes")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not prefix.startswith(("s3://", "http://", "https://")):
                raise ValueError(f"{prefix!r} must start with s3://, http:// or https://")
            if prefix.rstrip("/").count("/") < 2 or prefix.endswith("://"):
                raise ValueError(f"{prefix!r} must name at least a host or bucket")
        return prefixes
