"""Typed settings of an annotation run, loaded from YAML; one object flows from the CLI to every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BackendName = Literal["offline", "openai"]
STAGES: tuple[int, ...] = (1, 2, 3, 4)


class AnnotateConfigError(ValueError):
    """An annotation config is invalid; the message names the file and the fields."""


class AnnotateConfig(BaseModel):
    """Backend, prompts, throughput and validation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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

    def backend_for(self, stage: int) -> BackendName:
        """The backend that answers ``stage``."""
        return self.stage_backend.get(stage, self.backend)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> "AnnotateConfig":
        """Load a YAML file; keyword overrides (CLI flags) win over the file."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise AnnotateConfigError(f"{path}: cannot read config ({err})") from None
        if not isinstance(raw, dict):
            raise AnnotateConfigError(f"{path}: top level must be a mapping")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise AnnotateConfigError(f"{path}: {fields}") from None

    def api_key(self) -> str | None:
        """The API key from the environment, if set."""
        return os.environ.get(self.api_key_env) or None
