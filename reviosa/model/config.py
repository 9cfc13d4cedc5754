"""Typed ReVIOSa model settings, loaded from YAML (``configs/tiny.yaml``, ``1b.yaml``, ``4b.yaml`` ship here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reviosa.config import Config

CONFIG_DIR = Path(__file__).with_name("configs")


class VisionConfig(Config):
    """InternViT vision tower (frozen)."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    image_size: int = Field(448, description="one square tile per frame")
    patch_size: int = 14


class TextConfig(Config):
    """Qwen2 language model (LoRA-adapted)."""

    hidden_size: int = 896
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    intermediate_size: int = 4864
    vocab_size: int = 151674
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    # transformers' 0.02 suits wide models; a narrow random one needs ~1/sqrt(hidden_size) to learn in minutes.
    initializer_range: float = Field(0.02, gt=0, le=1, description="std of the random init of the language model and "
                                     "the projector (not the vision tower); unused with pretrained weights")


class MLLMConfig(Config):
    """The InternVL-2.5 half: random architecture from the fields below, or real weights from ``pretrained``."""

    pretrained: str | None = Field(None, description="HF-format InternVL-2.5 folder or s3:// URI; None = random")
    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    downsample_ratio: float = 0.5
    projector_hidden_act: str = "gelu"

    @property
    def tokens_per_frame(self) -> int:
        """Vision tokens per frame after pixel shuffle."""
        side = self.vision.image_size // self.vision.patch_size
        return int(side * self.downsample_ratio) ** 2

    @property
    def grid(self) -> int:
        """Side of the per-frame vision-token grid."""
        return int(round(self.tokens_per_frame ** 0.5))


class SAM2Config(Config):
    """The SAM2 half (``sam2`` package classes); defaults are ``sam2_hiera_l`` (SAM2 v1 Hiera-L)."""

    checkpoint: str | None = Field(None, description="sam2_hiera_large.pt / .safetensors path or s3:// URI")
    image_size: int = 1024
    embed_dim: int = 144
    num_heads: int = 2
    stages: list[int] = [2, 6, 36, 4]
    global_att_blocks: list[int] = [23, 33, 43]
    window_spec: list[int] = [8, 4, 16, 8]
    window_pos_embed_bkg_spatial_size: list[int] = [7, 7]
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    memory_attention_layers: int = 4
    memory_attention_ff: int = 2048
    fuser_layers: int = 2

    @property
    def low_res(self) -> int:
        """Side of the decoder's low-resolution mask logits."""
        return self.image_size // 4

    @model_validator(mode="after")
    def _consistent(self) -> "SAM2Config":
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")
        if self.d_model % 16 or self.d_model % self.mem_dim:
            raise ValueError(f"d_model ({self.d_model}) must divide by 16 and by mem_dim ({self.mem_dim})")
        if len(self.stages) != 4 or len(self.window_spec) != 4:
            raise ValueError("stages and window_spec must have 4 entries (Hiera stages)")
        if (self.image_size // 4) % self.window_spec[0]:
            raise ValueError(f"image_size/4 must divide by window_spec[0] ({self.window_spec[0]})")
        return self


class LoRASettings(Config):
    """LoRA on every linear layer of the language model (not the vision tower or projector)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    # The official recipe trains the whole lm_head (modules_to_save); a random base needs it, because frozen random
    # output rows cap how well even the fixed answer text can be predicted (~4.5 nats on the tiny config).
    train_lm_head: bool = Field(False, description="train every lm_head row, not only the new tokens' (untied only)")


class LossConfig(Config):
    """Loss weights and the AML layer/head pairs (0-based HF indices)."""

    bce_weight: float = 2.0
    dice_weight: float = 0.5
    text_weight: float = 1.0
    # AML is switched off one way only, by naming no heads: then no attention is computed at all.
    aml_weight: float = Field(1.0, gt=0, description="weight of the attention-mask loss (to switch AML off, empty "
                              "aml_heads)")
    aml_heads: list[tuple[int, int]] = Field([(22, 5), (22, 7), (22, 10), (22, 11)],
                                             description="(layer, head) pairs AML supervises; [] = no AML")
    # One sampled pixel per patch misses objects smaller than a patch (tiny 4x4 grid: 2/3 of frames showing them).
    aml_patch_rule: Literal["nearest", "any"] = Field("nearest", description="AML target per vision patch: the "
                                                      "official nearest sample, or any object pixel in the patch")
    num_points: int = Field(12544, ge=0, description="point-sampled mask loss; 0 = every low-res pixel")
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75


class PromptConfig(Config):
    """Question/answer wording of the chat turns (training and inference use the same template)."""

    question: str = ("Please segment {expression} in this video. If both a subject and an object are present, "
                     "please provide separate segmentation masks for each.")
    answer_actor: str = "Sure, it is [SEG_ACT]."
    answer_interaction: str = "Sure, it is [SEG_ACT] and [SEG_TAR]."


class InferenceConfig(Config):
    """Video inference: key frames for the MLLM (also SAM2's conditioning frames) and generation length."""

    key_frames: int = Field(5, ge=1)
    key_frame_sampling: Literal["first", "uniform"] = "first"
    max_new_tokens: int = Field(32, ge=1)
    # Training never runs SAM2's memory path; a pretrained SAM2 brings working memory modules, a random one does not.
    memory: bool = Field(True, description="track with SAM2 memory from the key frames; false: prompt every frame")


class ModelConfig(Config):
    """Everything that shapes a ReVIOSa model; one object flows from YAML to the model, trainer and server."""

    shipped_dir = CONFIG_DIR

    name: str = "reviosa"
    mllm: MLLMConfig = MLLMConfig()
    sam2: SAM2Config = SAM2Config()
    lora: LoRASettings = LoRASettings()
    loss: LossConfig = LossConfig()
    prompt: PromptConfig = PromptConfig()
    inference: InferenceConfig = InferenceConfig()
    train_frames: int = Field(4, ge=1, description="frames per training sample")
    projection_dropout: float = 0.0
    # Table 4 (i)/(ii): one [SEG] for both roles. The [SEG_TAR] row is tied to [SEG_ACT]'s, so the two tokens differ
    # only by position; the answer text still has two of them, which is what lets the ablation reuse the data.
    shared_seg_token: bool = Field(False, description="ablation: [SEG_TAR] shares [SEG_ACT]'s embedding")

    @model_validator(mode="after")
    def _heads_exist(self) -> "ModelConfig":
        t = self.mllm.text
        for layer, head in self.loss.aml_heads:
            if not (0 <= layer < t.num_hidden_layers and 0 <= head < t.num_attention_heads):
                raise ValueError(f"aml_heads entry ({layer}, {head}) is outside {t.num_hidden_layers} layers × "
                                 f"{t.num_attention_heads} heads")
        if self.lora.train_lm_head and t.tie_word_embeddings:
            raise ValueError("lora.train_lm_head needs mllm.text.tie_word_embeddings: false (a tied lm_head is the "
                             "input embedding table)")
        if t.num_attention_heads % t.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self
