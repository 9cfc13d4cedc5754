"""Typed settings of an evaluation run (``configs/default.yaml`` ships here); ``--set`` overrides the file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from reviosa.config import Config


class EvalConfig(Config):
    """Metric tolerance, parallelism and output settings of ``evaluate_split``."""

    shipped_dir = Path(__file__).with_name("configs")

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
