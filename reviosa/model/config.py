"""Typed ReVIOSa model settings, loaded from YAML (``configs/tiny.yaml``, ``1b.yaml``, ``4b.yaml`` ship here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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


SAM2Size = Literal["tiny", "small", "base_plus", "large"]

#: Hiera trunk of each released size, as the ``sam2`` package builds it from ``configs/sam2/sam2_hiera_{t,s,b+,l}.yaml``
#: (SAM2.1's ``configs/sam2.1/sam2.1_hiera_*.yaml`` use the same trunks); values those files leave out are Hiera's
#: defaults, written out here. The names are those of the checkpoint files (``sam2_hiera_base_plus.pt``).
HIERA_SIZES: dict[str, dict[str, int | list[int]]] = {
    "tiny": dict(embed_dim=96, num_heads=1, stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9],
                 window_spec=[8, 4, 14, 7], window_pos_embed_bkg_spatial_size=[7, 7]),
    "small": dict(embed_dim=96, num_heads=1, stages=[1, 2, 11, 2], global_att_blocks=[7, 10, 13],
                  window_spec=[8, 4, 14, 7], window_pos_embed_bkg_spatial_size=[7, 7]),
    "base_plus": dict(embed_dim=112, num_heads=2, stages=[2, 3, 16, 3], global_att_blocks=[12, 16, 20],
                      window_spec=[8, 4, 14, 7], window_pos_embed_bkg_spatial_size=[14, 14]),
    "large": dict(embed_dim=144, num_heads=2, stages=[2, 6, 36, 4], global_att_blocks=[23, 33, 43],
                  window_spec=[8, 4, 16, 8], window_pos_embed_bkg_spatial_size=[7, 7]),
}


class SAM2Config(Config):
    """The SAM2 half (``sam2`` package classes); defaults are ``sam2_hiera_l`` (SAM2 v1 Hiera-L, the paper's).

    ``version`` picks the release's model flags (2.1 adds the object-pointer temporal projection and the spatial
    no-object embedding, i.e. weights ``obj_ptr_tpos_proj.*`` and ``no_obj_embed_spatial``); ``size`` picks the Hiera
    trunk. A trunk field left null takes the size's value, so ``sam2.size=tiny`` switches the whole trunk while a
    field written out (as in ``tiny.yaml``) overrides it.
    """

    checkpoint: str | None = Field(None, description="sam2_hiera_large.pt / sam2.1_hiera_*.pt / .safetensors path "
                                   "or s3:// URI; must match version and size")
    version: Literal["2", "2.1"] = Field("2", description="SAM2 release of the checkpoint: 2 (sam2_hiera_*.pt) or "
                                         "2.1 (sam2.1_hiera_*.pt)")
    size: SAM2Size = Field("large", description="Hiera size: tiny | small | base_plus | large")
    image_size: int = 1024
    embed_dim: int | None = Field(None, description="null: the size's")
    num_heads: int | None = Field(None, description="null: the size's")
    stages: list[int] | None = Field(None, description="null: the size's")
    global_att_blocks: list[int] | None = Field(None, description="null: the size's")
    window_spec: list[int] | None = Field(None, description="null: the size's")
    window_pos_embed_bkg_spatial_size: list[int] | None = Field(None, description="null: the size's")
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    memory_attention_layers: int = 4
    memory_attention_ff: int = 2048
    fuser_layers: int = 2

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value):
        # YAML and --set read 2.1 as a float and 2 as an int.
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @property
    def trunk(self) -> dict[str, int | list[int]]:
        """The Hiera trunk settings: each field as written, or the size's value where it is null."""
        return {k: v if getattr(self, k) is None else getattr(self, k) for k, v in HIERA_SIZES[self.size].items()}

    @property
    def low_res(self) -> int:
        """Side of the decoder's low-resolution mask logits."""
        return self.image_size // 4

    @model_validator(mode="after")
    def _consistent(self) -> "SAM2Config":
        trunk = self.trunk
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")
        if self.d_model % 16 or self.d_model % self.mem_dim:
            raise ValueError(f"d_model ({self.d_model}) must divide by 16 and by mem_dim ({self.mem_dim})")
        if len(trunk["stages"]) != 4 or len(trunk["window_spec"]) != 4:
            raise ValueError("stages and window_spec must have 4 entries (Hiera stages)")
        if (self.image_size // 4) % trunk["window_spec"][0]:
            raise ValueError(f"image_size/4 must divide by window_spec[0] ({trunk['window_spec'][0]})")
        return self


class LoRASettings(Config):
    """LoRA on every linear layer of the language model (not the vision tower or projector)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    # The official recipe trains (and saves) the whole embed_tokens and lm_head; a random base needs the lm_head too,
    # because frozen random output rows cap how well even the fixed answer text can be predicted (~4.5 nats on tiny).
    train_embed_tokens: bool = Field(False, description="train every input-embedding row, not only the new tokens'")
    train_lm_head: bool = Field(False, description="train every lm_head row, not only the new tokens' (untied only)")


class LossConfig(Config):
    """Loss weights and the AML layer/head pairs (0-based HF indices)."""

    bce_weight: float = 2.0
    dice_weight: float = 0.5
    text_weight: float = 1.0
    form_weight: float = Field(1.0, gt=0, description="weight, inside the text loss, of the token after [SEG_ACT] "
                               "that decides whether a [SEG_TAR] follows")
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
    # The official code averages the target BCE/dice over every (expression, frame) item of the batch, items without
    # a target counting as zero-gradient terms: the target loss is then scaled by the share of items with a target.
    target_normalization: Literal["official", "per_target"] = Field(
        "per_target", description="target mask loss averaged over all items (official) or over target items")


class PromptConfig(Config):
    """Wording of the chat turns: training draws a question template, a postfix and an answer form per expression;
    inference asks ``inference_question`` and lets the model answer (``configs/prompts/`` ships the paper's kind)."""

    shipped_dir = CONFIG_DIR / "prompts"

    questions: list[str] = Field(["Please segment {expression} in this video."], min_length=1,
                                 description="question templates holding {expression}; one is drawn per expression")
    postfixes: list[str] = Field([" If both a subject and an object are present, please provide separate "
                                  "segmentation masks for each."], min_length=1,
                                 description="appended to the drawn question; one is drawn per expression")
    answers_actor: list[str] = Field(["Sure, it is [SEG_ACT]."], min_length=1,
                                     description="answer forms of an expression without a target")
    answers_interaction: list[str] = Field(["Sure, it is [SEG_ACT] and [SEG_TAR]."], min_length=1,
                                           description="answer forms of an interaction with roles")
    inference_question: str = Field("Please segment {expression} in this video. If both a subject and an object are "
                                    "present, please provide separate segmentation masks for each.",
                                    description="the question asked at inference (and in validation)")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data):
        # Checkpoints saved before the prompt lists held one question (postfix included) and one answer per kind:
        # the same prompts as lists of one, so those checkpoints still load and ask what they were trained on.
        if not isinstance(data, dict) or not {"question", "answer_actor", "answer_interaction"} & data.keys():
            return data
        data = dict(data)
        if "question" in data:
            question = data.pop("question")
            data.setdefault("questions", [question])
            data.setdefault("postfixes", [""])
            data.setdefault("inference_question", question)
        for old, new in (("answer_actor", "answers_actor"), ("answer_interaction", "answers_interaction")):
            if old in data:
                data.setdefault(new, [data.pop(old)])
        return data

    @model_validator(mode="after")
    def _forms(self) -> "PromptConfig":
        for q in [*self.questions, self.inference_question]:
            if q.count("{expression}") != 1 or q.replace("{expression}", "").count("{"):
                raise ValueError(f"question {q!r} must hold {{expression}} once and no other placeholder")
        for a in self.answers_actor:
            if a.count("[SEG_ACT]") != 1 or "[SEG_TAR]" in a:
                raise ValueError(f"actor answer {a!r} must hold [SEG_ACT] once and no [SEG_TAR]")
        for a in self.answers_interaction:
            if a.count("[SEG_ACT]") != 1 or a.count("[SEG_TAR]") != 1 or a.index("[SEG_ACT]") > a.index("[SEG_TAR]"):
                raise ValueError(f"interaction answer {a!r} must hold [SEG_ACT] then [SEG_TAR], once each")
        return self


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
