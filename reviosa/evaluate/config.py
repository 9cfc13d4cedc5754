"""Typed settings of an evaluation run, loaded from YAML; CLI flags override the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class EvalConfigError(ValueError):
    """An evaluation config is invalid; the message names the file and the fields."""


class EvalConfig(BaseModel):
    """Metric tolerance, parallelism and output settings of ``evaluate_split``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bound_th: float = Field(0.008, ge=0, description="F tolerance: fraction of the image diagonal, or pixels if >= 1")
    workers: int = Field(0, ge=0, description="worker processes; 0 = all cores")
    start_method: Literal["fork", "spawn", "forkserver"] | None = Field(
        None, description="multiprocessing start method; None = the platform default")
    progress: bool = Field(True, description="show a progress bar")
    histogram_bins: int = Field(20, ge=1, le=200)

    @field_validator("bound_th")
    @classmethod
    def _whole_pixels(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("a bound_th >= 1 is a radius in pixels and must be whole")
        return v

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: object) -> "EvalConfig":
        """Load a YAML file; keyword overrides that are not None win over the file."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise EvalConfigError(f"{path}: cannot read config ({err})") from None
        if not isinstance(raw, dict):
            raise EvalConfigError(f"{path}: top level must be a mapping")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise EvalConfigError(f"{path}: {fields}") from None
