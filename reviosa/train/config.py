"""Typed settings of a fine-tuning run (``configs/tiny.yaml`` and ``1b.yaml`` ship here); one object flows everywhere.

A run's config holds its whole model config (``model: tiny`` in YAML expands to the shipped model config), so every
setting of a run, the model's included, is changed the same way: ``--set model.loss.aml_heads=[]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from reviosa.config import Config
from reviosa.model.config import ModelConfig
from reviosa.tracking.context import DataRef

CONFIG_DIR = Path(__file__).with_name("configs")


class AugmentConfig(Config):
    """Photometric/geometric augmentation of training clips (masks follow geometric ones)."""

    # A flip turns "moving left" into "moving right": keep it 0 unless expressions carry no direction words.
    hflip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip of the whole clip")
    brightness: float = Field(0.0, ge=0, le=0.5, description="uniform brightness offset range (fraction of 255)")
    contrast: float = Field(0.0, ge=0, le=0.5, description="uniform contrast scale range around 1")


class DataConfig(Config):
    """Where the splits are and how a sample is drawn from them."""

    train: str = Field(..., description="training split folder (InterRVOS/MeViS layout)")
    val: str | None = Field(None, description="validation split folder; None = no validation")
    expressions_per_sample: int = Field(2, ge=1, description="expressions of one video per sample (chat rounds)")
    unit: Literal["expression", "video"] = Field("expression", description="one item of an epoch: every expression "
                                                 "(as an anchor) or every video (the official recipe)")
    augment: AugmentConfig = AugmentConfig()


class OptimConfig(Config):
    """AdamW on the trainable parameters with linear warm-up then cosine decay to ``min_lr_ratio``."""

    lr: float = Field(4e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0, description="warm-up length in optimizer steps")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="warm-up length as a share of the run (instead of "
                                "warmup_steps)")
    warmup_start_factor: float | None = Field(None, gt=0, le=1, description="LR multiplier at the first step, rising "
                                              "linearly to 1; None: (step + 1) / warm-up steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0, description="0 = no clipping")

    @model_validator(mode="after")
    def _one_warmup(self) -> "OptimConfig":
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give warm-up as warmup_steps or warmup_ratio, not both")
        return self

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps``."""
        return round(self.warmup_ratio * total_steps) if self.warmup_ratio else self.warmup_steps


class DeepSpeedConfig(Config):
    """DeepSpeed engine settings; the JSON config is derived from these and the batch sizes."""

    zero_stage: int = Field(2, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")
    # DeepSpeed's shared-memory CPU all-reduce is JIT-compiled on first use (~30 s); gloo is enough for
    # small CPU runs, so the kernel stays off unless asked for.
    cpu_shm_comm: bool = False


class CheckpointConfig(Config):
    """Resumable checkpoints (engine + optimizer + trainer state) every N steps, the last K kept."""

    every: int = Field(50, ge=1)
    keep: int = Field(2, ge=1)
    dir: str | None = Field(None, description="checkpoint folder: None = <out>/checkpoints, a path, or an s3:// URI "
                            "shared by every node of a job (each checkpoint is uploaded whole before latest.json "
                            "names it, and --resume downloads the one it names)")


class ValidationConfig(Config):
    """Periodic validation with the InterRVOS protocol on (a prefix of) the validation split."""

    every: int = Field(0, ge=0, description="steps between validations; 0 = only at the end")
    max_videos: int = Field(8, ge=1)
    overlays: int = Field(2, ge=0, description="videos rendered as overlay GIF artifacts")
    teacher_forced_answer: bool = Field(False, description="force the answer text (tests the mask path alone)")


class TrackingConfig(Config):
    """MLflow: server URI (else ``$MLFLOW_TRACKING_URI``, else a local sqlite store in the output folder)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "reviosa-train"
    run_name: str | None = Field(None, description="None: what ran, e.g. train-1b-aml-tokens-data-v2")
    data: DataRef | None = Field(None, description="the dataset version of data.train as a pipeline knows it; None: "
                                 "found from the DVC repository holding data.train, else recorded as untracked")
    tags: dict[str, str] = Field({}, description="extra run tags (a pipeline's KFP run)")
    log_every: int = Field(1, ge=1)
    system_metrics: bool = True
    system_metrics_interval: float = Field(10.0, gt=0, description="seconds between CPU/GPU/memory samples")
    log_model: bool = True


class TrainConfig(Config):
    """Everything about one fine-tuning run."""

    shipped_dir = CONFIG_DIR

    model: ModelConfig = Field(..., description="the model: a shipped name (tiny | 1b | 4b), a YAML path, or a mapping")
    init_from: str | None = Field(None, description="start from these weights (save_pretrained folder, s3:// or a "
                                  "shipped name such as reviosa-tiny-base); "
                                  "they must fit ``model``")
    data: DataConfig
    out: str = Field("runs/train", description="output folder: checkpoints/, final/, mlruns.db")
    publish: str | None = Field(None, description="folder or s3:// URI that receives final/ and then summary.json "
                                "when the run ends (where a multi-node launcher collects the model)")
    steps: int = Field(100, ge=1, description="optimizer steps (ignored when ``epochs`` is set)")
    epochs: float | None = Field(None, gt=0, description="run length in passes over the training items (data.unit); "
                                 "when set, steps = ceil(epochs * items / samples per optimizer step)")
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


class StageConfig(Config):
    """Length and peak learning rate of one pretraining stage (AdamW, one-cycle schedule)."""

    steps: int = Field(..., ge=0, description="optimizer steps; 0 skips the stage")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")


class PretrainStages(Config):
    """The four stages of pretraining, in order."""

    # A stand-in for SAM2's own pretraining: the image encoder learns per-pixel shape and colour classes of freshly
    # drawn frames, then is frozen again. 3000 steps (~500 s on 2 cores) raised the held-out frame IoU of the
    # whole pretraining from 0.676 to 0.770 (shape-only descriptions 0.42 -> 0.60, colour-only 0.87 -> 0.94).
    encoder: StageConfig = StageConfig(steps=3000)
    # Held-out frame IoU after the decoder stage with attribute prompts / after joint with the text: 0.552 / 0.496
    # with 1000 + 1000 + 500 steps, 0.659 / 0.597 with 3000 + 1000 + 500, 0.659 / 0.655 with these.
    decoder: StageConfig = StageConfig(steps=3000)
    llm: StageConfig = StageConfig(steps=2000)
    joint: StageConfig = StageConfig(steps=1000, lr=3e-4)


class PretrainConfig(Config):
    """Pretraining of the tiny model on single synthetic frames: its stand-in for InternVL and SAM2 checkpoints."""

    shipped_dir = CONFIG_DIR / "pretrain"

    model: ModelConfig = Field(..., description="the model to pretrain: shipped name, YAML path or mapping")
    data: str = Field(..., description="synthetic training split whose frames are drawn")
    val: str | None = Field(None, description="synthetic split scored at the end (held-out frame IoU)")
    world: str = Field("default", description="synthetic world config (name or YAML) whose shapes, colours and "
                                              "sizes the image encoder stage draws")
    out: str = Field("runs/pretrain", description="checkpoint folder written (save_pretrained + pretrain.json)")
    stages: PretrainStages = PretrainStages()
    batch_size: int = Field(8, ge=1, description="frames per step")
    pair_fraction: float = Field(0.5, ge=0, le=1, description="share of samples naming two objects (\"A and B\")")
    seed: int = 0
