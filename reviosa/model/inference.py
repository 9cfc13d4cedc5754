"""Video inference: the MLLM answers on key frames, SAM2 segments every frame with its memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reviosa.model import mllm as mllm_ops
from reviosa.model import sam as sam_ops
from reviosa.model.tokenizer import IM_END, IMG_CONTEXT, IMG_END, IMG_START, PAD, SEG_ACT, SEG_TAR, encode_conversation


@dataclass
class Prediction:
    """Generated text and per-frame bool masks (T, H, W) per role at the video's resolution."""

    text: str
    actor: np.ndarray
    target: np.ndarray | None


def key_frame_indices(n_frames: int, k: int, sampling: str = "first") -> list[int]:
    """The frames the MLLM sees (and SAM2 is prompted on): the first ``k`` or ``k`` spread uniformly."""
    if n_frames < 1:
        raise ValueError("the video has no frames")
    k = min(k, n_frames)
    if sampling == "first":
        return list(range(k))
    if sampling == "uniform":
        return sorted(set(np.linspace(0, n_frames - 1, k).round().astype(int).tolist()))
    raise ValueError(f"unknown key-frame sampling {sampling!r} (first | uniform)")


def _as_frames(frames) -> Sequence[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        return frames
    frames = list(frames)
    if not frames or any(f.ndim != 3 or f.shape != frames[0].shape for f in frames):
        raise ValueError("frames must be a non-empty sequence of equally sized (H, W, 3) RGB arrays")
    return frames


@torch.no_grad()
def generate_answer(model, prompt_ids: list[int], pixel_values: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Greedy reply token ids (stop token excluded); image placeholder tokens are never produced."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    eos = model.tokenizer.convert_tokens_to_ids(IM_END)
    # An untrained model may otherwise emit <IMG_CONTEXT>, which has no image features to fill it when the reply is
    # fed back for the [SEG] states.
    images = [model.token_ids[t] for t in (IMG_START, IMG_CONTEXT, IMG_END)]
    seq = model.lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixel_values,
                            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                            pad_token_id=model.tokenizer.convert_tokens_to_ids(PAD), suppress_tokens=images)
    new = seq[0, ids.size(1):].tolist()
    return new[:new.index(eos)] if eos in new else new


@torch.no_grad()
def seg_embeddings(model, ids: list[int], pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Projected last-layer hidden states of the first ``[SEG_ACT]`` and the first ``[SEG_TAR]`` after it."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    out = model.lm.model(input_ids=x, pixel_values=pixel_values, attention_mask=torch.ones_like(x), use_cache=False)
    last = out.last_hidden_state[0]
    found = {}
    act = [i for i, t in enumerate(ids) if t == model.token_ids[SEG_ACT]]
    if act:
        found[SEG_ACT] = act[0]
        tar = [i for i, t in enumerate(ids) if t == model.token_ids[SEG_TAR] and i > act[0]]
        if tar:
            found[SEG_TAR] = tar[0]
    return {k: model.projection(last[pos]) for k, pos in found.items()}


@torch.no_grad()
def predict_video(model, frames, expression: str, answer: str | None = None) -> Prediction:
    """Segment the actor (and the target when ``[SEG_TAR]`` is produced) of ``expression`` in a video.

    ``frames``: uint8 (T, H, W, 3) array or a sequence of RGB frames, any length. ``answer`` forces the reply
    text instead of generating it (teacher forcing, e.g. to check the segmentation path alone).
    """
    cfg = model.config
    was_training = model.training
    model.eval()
    try:
        frames = _as_frames(frames)
        n = len(frames)
        h, w = frames[0].shape[:2]
        device = next(model.parameters()).device
        keys = key_frame_indices(n, cfg.inference.key_frames, cfg.inference.key_frame_sampling)
        prompt, _ = encode_conversation(model.tokenizer, cfg, len(keys), [expression], None)
        pixels = mllm_ops.preprocess_frames(np.stack([frames[i] for i in keys]), cfg.mllm.vision.image_size)
        pixels = pixels.to(device, next(model.lm.parameters()).dtype)
        if answer is None:
            reply = generate_answer(model, prompt, pixels, cfg.inference.max_new_tokens)
        else:
            reply = model.tokenizer.encode(answer, add_special_tokens=False)
        text = model.tokenizer.decode(reply, skip_special_tokens=False).replace(PAD, "").strip()
        emb = seg_embeddings(model, prompt + reply, pixels)
        if SEG_ACT not in emb:
            return Prediction(text=text, actor=np.zeros((n, h, w), dtype=bool), target=None)
        lang = torch.stack([emb[k] for k in (SEG_ACT, SEG_TAR) if k in emb])
        sam_dtype = next(model.sam.parameters()).dtype

        def get_frame(i: int) -> torch.Tensor:
            return sam_ops.preprocess_frames(frames[i][None], cfg.sam2.image_size).to(device, sam_dtype)

        cond = keys if cfg.inference.memory else range(n)
        masks = sam_ops.propagate(model.sam, n, get_frame, lang.to(sam_dtype), cond, (h, w))
        return Prediction(text=text, actor=masks[0], target=masks[1] if len(lang) > 1 else None)
    finally:
        model.train(was_training)
