"""Typed model inputs: one training sample from a dataset video, and the collated batch the model takes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from reviosa.model import mllm, sam
from reviosa.model.config import ModelConfig
from reviosa.model.tokenizer import answer_text, encode_conversation


@dataclass
class ReviosaSample:
    """One video clip with E expressions as an E-round chat (the first round carries the frames)."""

    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor            # (T, 3, s, s) MLLM tiles
    sam_images: torch.Tensor              # (T, 3, S, S) SAM2 input
    has_target: list[bool]                # per expression
    actor_masks: torch.Tensor | None = None   # (E, T, S/4, S/4) float {0,1}
    target_masks: torch.Tensor | None = None  # (E, T, S/4, S/4), zeros where there is no target
    video: str = ""
    exp_ids: list[str] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)


@dataclass
class ReviosaBatch:
    """B samples with the same T frames and E expressions; token rows right-padded."""

    input_ids: torch.Tensor        # (B, L)
    attention_mask: torch.Tensor   # (B, L)
    labels: torch.Tensor           # (B, L), −100 where not supervised
    position_ids: torch.Tensor     # (B, L)
    pixel_values: torch.Tensor     # (B·T, 3, s, s), sample-major
    sam_images: torch.Tensor       # (B·T, 3, S, S)
    has_target: torch.Tensor       # (B, E) bool
    actor_masks: torch.Tensor | None = None   # (B, E, T, h, w)
    target_masks: torch.Tensor | None = None  # (B, E, T, h, w)

    @property
    def num_frames(self) -> int:
        """Frames per sample."""
        return self.pixel_values.size(0) // self.input_ids.size(0)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ReviosaBatch":
        """The batch on another device; image tensors optionally cast to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                cast = dtype if dtype is not None and f.name in ("pixel_values", "sam_images") else None
                v = v.to(device=device, dtype=cast) if cast else v.to(device)
            out[f.name] = v
        return ReviosaBatch(**out)


def resize_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """(..., H, W) bool masks → (..., size, size) float {0,1}, nearest (the direct square resize of the frames)."""
    t = torch.as_tensor(np.asarray(masks, dtype=np.uint8))
    lead = t.shape[:-2]
    small = F.interpolate(t.reshape(-1, 1, *t.shape[-2:]).float(), size=(size, size), mode="nearest")
    return small.reshape(*lead, size, size)


def build_sample(cfg: ModelConfig, tokenizer, frames: np.ndarray, expressions: list[str], has_target: list[bool],
                 actor_masks: np.ndarray | None = None, target_masks: np.ndarray | None = None,
                 rng: np.random.Generator | None = None, **meta) -> ReviosaSample:
    """A sample from RGB frames (T, H, W, 3), expression texts and optional (E, T, H, W) bool GT masks; ``rng``
    draws each turn's question and answer form (none: the first of each)."""
    if len(expressions) != len(has_target) or not expressions:
        raise ValueError("give one has_target flag per expression, and at least one expression")
    answers = [answer_text(cfg, t, rng) for t in has_target]
    ids, labels = encode_conversation(tokenizer, cfg, len(frames), expressions, answers, rng)
    low = cfg.sam2.low_res
    sample = ReviosaSample(
        input_ids=ids, labels=labels, pixel_values=mllm.preprocess_frames(frames, cfg.mllm.vision.image_size),
        sam_images=sam.preprocess_frames(frames, cfg.sam2.image_size), has_target=list(has_target), **meta)
    if actor_masks is not None:
        for name, m in (("actor", actor_masks), ("target", target_masks)):
            if m is None or m.shape[:2] != (len(expressions), len(frames)):
                raise ValueError(f"{name} masks must have shape (E={len(expressions)}, T={len(frames)}, H, W)")
        sample.actor_masks = resize_masks(actor_masks, low)
        sample.target_masks = resize_masks(target_masks, low)
    return sample


def sample_from_dataset(cfg: ModelConfig, tokenizer, dataset, video, exp_ids: list[str],
                        frame_indices: list[int]) -> ReviosaSample:
    """A sample of the given expressions of a dataset video at the given frames, with GT masks."""
    exps = [video.expressions[e] for e in exp_ids]
    frames = dataset.read_frames(video, frame_indices)
    act = np.stack([dataset.union_masks(video, e.anno_ids)[frame_indices] for e in exps])
    tar = np.stack([dataset.union_masks(video, e.target_anno_ids)[frame_indices] for e in exps])
    return build_sample(cfg, tokenizer, frames, [e.text for e in exps], [e.has_target for e in exps], act, tar,
                        video=video.name, exp_ids=list(exp_ids), frame_indices=list(frame_indices))


def random_training_sample(cfg: ModelConfig, tokenizer, dataset, video, rng: np.random.Generator,
                           n_expressions: int = 1) -> ReviosaSample:
    """Sorted random frames (``cfg.train_frames``) and expressions, an interaction expression first when any."""
    n = video.num_frames
    k = cfg.train_frames
    frames = sorted(rng.choice(n, size=k, replace=n < k).tolist())
    ids = list(video.expressions)
    if not ids:
        raise ValueError(f"video {video.name} has no expressions")
    inter = [e for e in ids if video.expressions[e].has_target]
    chosen = [str(rng.choice(inter))] if inter else []
    rest = [e for e in ids if e not in chosen]
    need = n_expressions - len(chosen)
    chosen += [str(e) for e in rng.choice(rest or ids, size=need, replace=len(rest) < need)] if need > 0 else []
    return sample_from_dataset(cfg, tokenizer, dataset, video, chosen[:n_expressions], frames)


def collate(samples: list[ReviosaSample], pad_id: int) -> ReviosaBatch:
    """Right-pad token rows and stack images and masks (every sample must share T and E)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    shapes = {(s.pixel_values.size(0), len(s.has_target)) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples differ in (frames, expressions): {sorted(shapes)}")
    length = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), -100, dtype=torch.long)
    att = torch.zeros((len(samples), length), dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, :len(s.input_ids)] = torch.tensor(s.input_ids)
        labels[i, :len(s.labels)] = torch.tensor(s.labels)
        att[i, :len(s.input_ids)] = 1
    has_masks = all(s.actor_masks is not None for s in samples)
    return ReviosaBatch(
        input_ids=ids, attention_mask=att, labels=labels,
        position_ids=torch.arange(length).unsqueeze(0).expand(len(samples), -1).contiguous(),
        pixel_values=torch.cat([s.pixel_values for s in samples]),
        sam_images=torch.cat([s.sam_images for s in samples]),
        has_target=torch.tensor([s.has_target for s in samples], dtype=torch.bool),
        actor_masks=torch.stack([s.actor_masks for s in samples]) if has_masks else None,
        target_masks=torch.stack([s.target_masks for s in samples]) if has_masks else None)
