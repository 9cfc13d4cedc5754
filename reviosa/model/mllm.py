"""InternVL-2.5 through transformers: random from a config or real weights, special tokens, LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from reviosa.model.config import ModelConfig
from reviosa.model.convert import ensure_hf_internvl
from reviosa.model.frames import imagenet_frames
from reviosa.model.tokenizer import IMG_CONTEXT, SEG_TOKENS, add_seg_tokens, build_tiny_tokenizer

# LoRA goes on every linear of the language model's decoder layers only (not vision tower, projector, lm_head).
LORA_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def internvl_config(cfg: ModelConfig, vocab_size: int, image_token_id: int):
    """A transformers ``InternVLConfig`` for the architecture in ``cfg``."""
    from transformers import InternVLConfig

    v, t = cfg.mllm.vision, cfg.mllm.text
    return InternVLConfig(
        vision_config=dict(hidden_size=v.hidden_size, num_hidden_layers=v.num_hidden_layers,
                           num_attention_heads=v.num_attention_heads, intermediate_size=v.intermediate_size,
                           image_size=[v.image_size, v.image_size], patch_size=[v.patch_size, v.patch_size]),
        text_config=dict(model_type="qwen2", vocab_size=vocab_size, hidden_size=t.hidden_size,
                         intermediate_size=t.intermediate_size, num_hidden_layers=t.num_hidden_layers,
                         num_attention_heads=t.num_attention_heads, num_key_value_heads=t.num_key_value_heads,
                         max_position_embeddings=t.max_position_embeddings, rope_theta=t.rope_theta,
                         rms_norm_eps=t.rms_norm_eps, tie_word_embeddings=t.tie_word_embeddings,
                         initializer_range=t.initializer_range),
        image_token_id=image_token_id, image_seq_length=cfg.mllm.tokens_per_frame,
        downsample_ratio=cfg.mllm.downsample_ratio, projector_hidden_act=cfg.mllm.projector_hidden_act,
        tie_word_embeddings=t.tie_word_embeddings)


def build_mllm(cfg: ModelConfig, local_path: str | Path | None = None):
    """(InternVL model with ``[SEG_ACT]``/``[SEG_TAR]`` added and embeddings resized, tokenizer)."""
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    if local_path is not None:
        # Original OpenGVLab (remote-code) folders are converted once into a cache keyed by their content.
        local_path = ensure_hf_internvl(local_path)
        _check_hf_internvl(Path(local_path))
        tokenizer = AutoTokenizer.from_pretrained(local_path)
        model = InternVLForConditionalGeneration.from_pretrained(local_path, dtype=torch.float32)
    else:
        tokenizer = build_tiny_tokenizer()
        vocab = max(cfg.mllm.text.vocab_size, len(tokenizer)) if cfg.mllm.text.vocab_size > 4096 else len(tokenizer)
        img_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
        model = InternVLForConditionalGeneration(internvl_config(cfg, vocab, img_id))
    add_seg_tokens(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        # Real checkpoints get mean-resized rows (transformers' default); random ones need no such care.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=local_path is not None)
    if model.config.image_token_id != tokenizer.convert_tokens_to_ids(IMG_CONTEXT):
        raise ValueError(f"{local_path}: config image_token_id {model.config.image_token_id} is not the "
                         f"tokenizer's {IMG_CONTEXT} id")
    return model, tokenizer


def _check_hf_internvl(path: Path) -> None:
    """Refuse the original remote-code checkpoint layout with a clear message."""
    try:
        conf = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an InternVL checkpoint folder ({err})") from None
    if conf.get("model_type") == "reviosa_chat":
        raise ValueError(f"{path}: a whole ReVIOSa of the official code, not an InternVL base; import it with "
                         "`reviosa convert-official` and load the result as a checkpoint")
    if conf.get("model_type") != "internvl":
        raise ValueError(f"{path}: model_type {conf.get('model_type')!r} is not the transformers-native 'internvl' "
                         "format; use an '-hf' InternVL-2.5 checkpoint or an original OpenGVLab one "
                         "(model_type 'internvl_chat'), each as config.json + safetensors")


def add_lora(model, cfg: ModelConfig, seg_ids: list[int]):
    """Wrap with PEFT LoRA on the LLM; the new token rows train, the vision tower stays frozen, projector trains."""
    from peft import LoraConfig, get_peft_model

    tied = model.lm_head.weight is model.get_input_embeddings().weight
    # A whole table trains as a PEFT module to save; otherwise only the new tokens' rows do (trainable tokens).
    whole = [name for name, on in (("embed_tokens", cfg.lora.train_embed_tokens),
                                   ("lm_head", cfg.lora.train_lm_head and not tied)) if on]
    trainable_tokens = {} if cfg.lora.train_embed_tokens else {"embed_tokens": seg_ids}
    if not tied and not cfg.lora.train_lm_head:
        trainable_tokens["lm_head"] = seg_ids
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none",
                      target_modules=LORA_TARGETS, trainable_token_indices=trainable_tokens or None,
                      modules_to_save=whole or None)
    peft_model = get_peft_model(model, lora)
    inner = peft_model.base_model.model
    inner.model.multi_modal_projector.requires_grad_(True)
    inner.model.vision_tower.requires_grad_(False)
    return peft_model


def preprocess_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 (T, H, W, 3) → the MLLM's (T, 3, size, size) tile per frame (bicubic, ImageNet-normalised)."""
    return imagenet_frames(frames, size, "bicubic")


__all__ = ["SEG_TOKENS", "add_lora", "build_mllm", "internvl_config", "preprocess_frames"]
