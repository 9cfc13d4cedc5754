"""Typed settings of an annotation run, loaded from YAML (``configs/default.yaml`` ships here); one object flows
from the CLI to every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from reviosa.config import Config

BackendName = Literal["offline", "openai"]
STAGES: tuple[int, ...] = (1, 2, 3, 4)
CONFIG_DIR = Path(__file__).with_name("configs")


class MaskTrackConfig(Config):
    """Stage 0: SAM2 mask tracks for objects that have prompts but no given mask track."""

    prompts: str | None = Field(None, description="prompts file; None = the split's prompts.json if present")
    sam2_config: str = Field("large", description="tiny (random, tests/demo), large (sam2_hiera_l) or a YAML "
                             "file holding a SAM2Config or a model config with a 'sam2' section")
    sam2_checkpoint: str | None = Field(None, description="official SAM2 .pt / .safetensors path or s3:// URI")
    allow_random_weights: bool = Field(False, description="track with a randomly initialised SAM2 (meaningless "
                                       "masks except the copied mask prompts; tests and the demo only)")
    seed: int = Field(0, description="seed of the random initialisation when no checkpoint is given")
    device: str = Field("cpu", description="torch device, e.g. cuda or cuda:1")


class AnnotateConfig(Config):
    """Backend, prompts, throughput and validation settings."""

    shipped_dir: ClassVar[Path | None] = CONFIG_DIR

    backend: BackendName = Field("offline", description="offline: answers from scene_graph.json; openai: HTTP")
    #: per-stage override, e.g. {1: offline, 3: offline} to run only the text stages through a text-only model
    stage_backend: dict[int, BackendName] = Field(default_factory=dict)
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (OpenAI, vLLM, KServe)")
    model: str = Field("default", description="model name sent with every request")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key, if any")
    prompt_version: str = Field("v1", description="suffix of the prompt template files")
    max_tokens: int = Field(512, ge=16)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    concurrency: int = Field(8, ge=1, le=512, description="requests in flight at most")
    request_timeout_s: float = Field(120.0, gt=0)
    http_retries: int = Field(6, ge=0, description="retries of one request on 429/5xx/connection errors")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    validation_attempts: int = Field(3, ge=1, description="answers tried per request, the error fed back each time")
    frames_per_object: int = Field(4, ge=1, le=32, description="sampled frames shown to the vision stages")
    image_max_side: int = Field(448, ge=32, description="frames are downscaled so the longer side is at most this")
    max_expressions_per_kind: int = Field(3, ge=1, le=3, description="expressions per cue and object, groups per video")
    max_text_chars: int = Field(200, ge=8, le=200, description="longest text the schema lets the model write")
    mask_tracks: MaskTrackConfig = Field(default_factory=MaskTrackConfig, description="stage 0 (SAM2 mask tracks)")

    def backend_for(self, stage: int) -> BackendName:
        """The backend that answers ``stage``."""
        return self.stage_backend.get(stage, self.backend)

    def api_key(self) -> str | None:
        """The API key from the environment, if set."""
        return os.environ.get(self.api_key_env) or None
