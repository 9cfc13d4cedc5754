"""Typed settings of an evaluation run, loaded from YAML; CLI flags override the file."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reviosa.yamlconfig import load_yaml_config


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
        return load_yaml_config(cls, path, EvalConfigError, "evaluation config", **overrides)
