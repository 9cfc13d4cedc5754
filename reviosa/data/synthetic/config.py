"""Typed settings of the synthetic world, loaded from YAML (``configs/default.yaml`` ships beside this module)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from pydantic import Field, model_validator

from reviosa.config import Config
from reviosa.data.scene_graph import InteractionKind, Motion
from reviosa.data.synthetic.shapes import COLORS, SHAPES

SIZE_NAMES = ("small", "medium", "large")
#: circumradius / min(height, width): at 64 px a small object is 15 px across (7.7 px circumradius), the least at
#: which the tiny SAM2 tells every shape apart; sizes stay apart under the renderer's +-7 % jitter
DEFAULT_SIZES = {"small": 0.12, "medium": 0.155, "large": 0.19}


class SyntheticConfig(Config):
    """Everything that shapes a generated split; one object flows from the CLI to the renderer."""

    shipped_dir = Path(__file__).with_name("configs")

    frames: int = Field(16, ge=6, le=512, description="frames per video")
    height: int = Field(128, ge=48, le=2048, description="frame height in pixels")
    width: int = Field(128, ge=48, le=2048, description="frame width in pixels")
    min_objects: int = Field(2, ge=2, le=9)
    max_objects: int = Field(4, ge=2, le=9)
    #: hexagon is left out by default: at a 7-pixel circumradius it differs from a circle by under one pixel
    shapes: list[str] = Field(default_factory=lambda: [s for s in SHAPES if s != "hexagon"])
    distinct_shapes: bool = Field(True, description="every object of a video has its own shape, so a class-level "
                                                    "expression (\"the circle chasing the square\") names one object")
    colors: list[str] = Field(default_factory=lambda: list(COLORS))
    #: object circumradius as a fraction of min(height, width), per size label
    sizes: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SIZES))
    motions: list[Motion] = Field(default_factory=lambda: list(get_args(Motion)))
    interaction_kinds: list[InteractionKind] = Field(default_factory=lambda: list(get_args(InteractionKind)))
    max_interactions: int = Field(2, ge=0, le=4, description="interactions per video at most")
    interaction_prob: float = Field(0.7, ge=0, le=1, description="chance of each interaction slot being used")
    shared_motion_prob: float = Field(0.6, ge=0, le=1, description="chance an object reuses a taken motion")
    exit_prob: float = Field(0.1, ge=0, le=1, description="chance a straight mover leaves the frame")
    background: str = Field("textured", pattern="^(plain|textured)$")
    jpeg_quality: int = Field(95, ge=50, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticConfig":
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) exceeds max_objects ({self.max_objects})")
        unknown = sorted(set(self.shapes) - set(SHAPES))
        if unknown or not self.shapes:
            raise ValueError(f"shapes must be a non-empty subset of {list(SHAPES)}; unknown: {unknown}")
        unknown = sorted(set(self.colors) - set(COLORS))
        if unknown or not self.colors:
            raise ValueError(f"colors must be a non-empty subset of {list(COLORS)}; unknown: {unknown}")
        if sorted(self.sizes) != sorted(SIZE_NAMES):
            raise ValueError(f"sizes must give exactly {list(SIZE_NAMES)}, got {sorted(self.sizes)}")
        radii = [self.sizes[s] for s in SIZE_NAMES]
        if not (0.02 <= radii[0] < radii[1] < radii[2] <= 0.2):
            raise ValueError(f"sizes must grow small < medium < large within [0.02, 0.2], got {self.sizes}")
        if not self.motions:
            raise ValueError("motions must name at least one individual motion")
        if self.motions == ["rotating"] and self.shapes == ["circle"]:
            raise ValueError("a rotating circle looks still: give another motion or shape")
        if self.max_interactions and not self.interaction_kinds:
            raise ValueError("interaction_kinds is empty but max_interactions > 0")
        if self.distinct_shapes and len(set(self.shapes)) < self.max_objects:
            raise ValueError(f"distinct_shapes needs at least max_objects ({self.max_objects}) shapes, "
                             f"got {len(set(self.shapes))}")
        if len(set(self.shapes)) * len(set(self.colors)) * 3 < self.max_objects:
            raise ValueError("too few shapes/colors to give every object a distinct appearance")
        return self

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.height, self.width
