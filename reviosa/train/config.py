"""Typed training settings, loaded from YAML (``configs/tiny.yaml`` ships here); one object flows everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reviosa.yamlconfig import deep_merge, read_yaml_mapping, shipped_or_path, validate_config

CONFIG_DIR = Path(__file__).with_name("configs")


class TrainConfigError(ValueError):
    """A training config is invalid; the message names the file (if any) and the fields."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(_Strict):
    """Photometric/geometric augmentation of training clips (masks follow geometric ones)."""

    # A flip turns "moving left" into "moving right": keep it 0 unless expressions carry no direction words.
    hflip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip of the whole clip")
    brightness: float = Field(0.0, ge=0, le=0.5, description="uniform brightness offset range (fraction of 255)")
    contrast: float = Field(0.0, ge=0, le=0.5, description="uniform contrast scale range around 1")


class DataConfig(_Strict):
    """Where the splits are and how a sample is drawn from them."""

    train: str = Field(..., description="training split folder (InterRVOS/MeViS layout)")
    val: str | None = Field(None, description="validation split folder; None = no validation")
    expressions_per_sample: int = Field(2, ge=1, description="expressions of one video per sample (chat rounds)")
    augment: AugmentConfig = AugmentConfig()


class OptimConfig(_Strict):
    """AdamW on the trainable parameters with linear warm-up then cosine decay to ``min_lr_ratio``."""

    lr: float = Field(4e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0, description="0 = no clipping")


class DeepSpeedConfig(_Strict):
    """DeepSpeed engine settings; the JSON config is derived from these and the batch sizes."""

    zero_stage: int = Field(2, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")
    # DeepSpeed's shared-memory CPU all-reduce is JIT-compiled on first use (~30 s); gloo is enough for
    # small CPU runs, so the kernel stays off unless asked for.
    cpu_shm_comm: bool = False


class CheckpointConfig(_Strict):
    """Resumable checkpoints (engine + optimizer + trainer state) every N steps, the last K kept."""

    every: int = Field(50, ge=1)
    keep: int = Field(2, ge=1)


class ValidationConfig(_Strict):
    """Periodic validation with the InterRVOS protocol on (a prefix of) the validation split."""

    every: int = Field(0, ge=0, description="steps between validations; 0 = only at the end")
    max_videos: int = Field(8, ge=1)
    overlays: int = Field(2, ge=0, description="videos rendered as overlay GIF artifacts")
    teacher_forced_answer: bool = Field(False, description="force the answer text (tests the mask path alone)")


class TrackingConfig(_Strict):
    """MLflow: server URI (else ``$MLFLOW_TRACKING_URI``, else a local sqlite store in the output folder)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "reviosa-train"
    run_name: str | None = None
    log_every: int = Field(1, ge=1)
    system_metrics: bool = True
    system_metrics_interval: float = Field(10.0, gt=0, description="seconds between CPU/GPU/memory samples")
    log_model: bool = True


class TrainConfig(_Strict):
    """Everything about one training run."""

    model: str = Field("tiny", description="model config name (tiny | 1b | 4b) or YAML path")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="top-level ModelConfig fields to replace")
    single_seg_token: bool = Field(False, description="ablation: [SEG_TAR] shares [SEG_ACT]'s embedding")
    init_from: str | None = Field(None, description="start from a save_pretrained checkpoint (folder or s3://)")
    data: DataConfig
    out: str = Field("runs/train", description="output folder: checkpoints/, final/, mlruns.db")
    steps: int = Field(100, ge=1, description="optimizer steps")
    batch_size: int = Field(2, ge=1, description="samples per process per micro-step")
    grad_accum: int = Field(1, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = Field(10, ge=1, description="steps between console lines")
    # For randomly initialised (tiny) models. Measured on synthetic appearance expressions, batch 8: with the text
    # (~7 nats at first) and AML losses on from step 1 the [SEG] -> prompt path stayed expression-blind for 1000
    # steps (mask dice 0.65, as with no prompt); with the mask losses alone it left that plateau (dice 0.41).
    mask_only_steps: int = Field(0, ge=0, description="first optimizer steps with only the mask losses "
                                                      "(text and AML weights 0)")
    optim: OptimConfig = OptimConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    validation: ValidationConfig = ValidationConfig()
    tracking: TrackingConfig = TrackingConfig()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> "TrainConfig":
        """Load a YAML config (a name such as ``tiny`` means the shipped one); dotted overrides (``data.train``)."""
        path = resolve_config_path(path)
        raw = read_yaml_mapping(path, TrainConfigError, "training config")
        for key, value in overrides.items():
            node = raw
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return cls.build(raw, source=str(path))

    @classmethod
    def build(cls, raw: dict, source: str = "config") -> "TrainConfig":
        """Validate a mapping into a config, one readable error naming every bad field."""
        return validate_config(cls, raw, source, TrainConfigError, "training config")

    def to_yaml(self) -> str:
        """The config as YAML text (round-trips through ``from_yaml``)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def model_config_obj(self):
        """The ModelConfig this run trains (shipped name or path, with ``model_overrides`` applied)."""
        from reviosa.model.config import ModelConfig

        base = ModelConfig.from_yaml(self.model).model_dump(mode="json")
        try:
            return ModelConfig.model_validate(deep_merge(base, self.model_overrides))
        except ValidationError as err:
            raise TrainConfigError(f"model_overrides: {err}") from None

    def flat_params(self) -> dict[str, str]:
        """Dotted ``key: value`` strings for MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = str(value)[:500]

        walk("", self.model_dump(mode="json"))
        return out


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config file path, or the shipped training config of that name."""
    return shipped_or_path(path, CONFIG_DIR, TrainConfigError, "training config")
