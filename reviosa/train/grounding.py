"""Referring segmentation of single synthetic frames: the world in which pretraining and the grounding probes work.

A sample is one frame and a description of one visible object ("the large red circle"), or of two joined by
:data:`PAIR_JOIN`; its masks are those of every object the phrase fits. ReVIOSa's own pieces are reused as they are:
the LLM reads the frame and the description, the projected ``[SEG_ACT]``/``[SEG_TAR]`` states prompt SAM2's mask
decoder. :class:`AttributePrompts` stands for a perfect LLM: a learned embedding per attribute value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reviosa.data.format import InterRVOSDataset
from reviosa.data.synthetic.config import SIZE_NAMES
from reviosa.data.synthetic.expressions import FORMS, ObjectView, appearance_view, describe, matches
from reviosa.data.synthetic.shapes import COLORS, SHAPES
from reviosa.model import mllm as mllm_ops
from reviosa.model import sam as sam_ops
from reviosa.model.batch import resize_masks
from reviosa.model.losses import mask_losses
from reviosa.model.tokenizer import SEG_ACT, SEG_TAR, answer_text, encode_conversation

#: joins the two phrases of a pair sample. Not "and": in the video expressions "and" never means two tracks ("the
#: circle and the square moving together" is one, "bouncing up and down" is a motion), and a base taught "A and B" ->
#: two tokens still answered "A and B moving together" with [SEG_TAR] after 300 fine-tuning steps.
PAIR_JOIN = " as well as "

#: what a named thing is prompted with: the attributes its phrase names, and the object
Named = tuple[tuple[str, ...], ObjectView]


@dataclass
class Sample:
    """One frame, the expression, and the masks of the one or two things it names (in answer order)."""

    frame: np.ndarray
    text: str
    masks: list[np.ndarray]
    named: list[Named]


def draw(dataset: InterRVOSDataset, rng: np.random.Generator, pair_fraction: float) -> Sample:
    """A random frame and a description of one visible object, or of two joined by :data:`PAIR_JOIN`."""
    videos = list(dataset.videos.values())
    while True:
        video = videos[int(rng.integers(len(videos)))]
        t = int(rng.integers(video.num_frames))
        visible = [o for o in video.objects.values() if dataset.object_masks(video, o.obj_id)[t].any()]
        n = 2 if (len(visible) >= 2 and rng.random() < pair_fraction) else 1
        if len(visible) < n:
            continue
        views = {o.anno_id: appearance_view(o) for o in video.objects.values()}
        picked = [views[visible[i].anno_id] for i in rng.choice(len(visible), size=n, replace=False)]
        phrases, masks, named = [], [], []
        for view in picked:
            form = list(FORMS)[int(rng.integers(len(FORMS)))]
            phrases.append(describe(view, form))
            named.append((FORMS[form], view))
            # an ambiguous phrase ("the circle") names every object it fits
            fits = [anno for anno, other in views.items() if matches(form, view, other)]
            masks.append(dataset.union_masks(video, fits)[t])
        if n == 2 and bool((masks[0] & masks[1]).any()):
            continue  # "the circle as well as the red circle": the two phrases overlap, so neither answer is right
        return Sample(dataset.read_frames(video, [t])[0], PAIR_JOIN.join(phrases), masks, named)


def flat(samples: list[Sample]) -> tuple[list[int], np.ndarray, list[Named]]:
    """Per named thing: its sample index, ground-truth mask and (attributes, object), in answer order."""
    owner = [i for i, s in enumerate(samples) for _ in s.masks]
    return owner, np.stack([m for s in samples for m in s.masks]), [n for s in samples for n in s.named]


class AttributePrompts(torch.nn.Module):
    """A learned embedding per attribute value; a thing's prompt sums those of the attributes named (zero if none)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.vocab = {"color": list(COLORS), "category": list(SHAPES), "size": list(SIZE_NAMES)}
        self.tables = torch.nn.ModuleDict({k: torch.nn.Embedding(len(v), dim) for k, v in self.vocab.items()})

    def forward(self, named: list[Named]) -> torch.Tensor:
        """(N, dim) prompts."""
        rows = [sum((self.tables[k].weight[self.vocab[k].index(getattr(view, k))] for k in keys),
                    torch.zeros(self.dim)) for keys, view in named]
        return torch.stack(rows)


def seg_states(model, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected [SEG_ACT] (and [SEG_TAR]) states of every named thing of a batch (teacher-forced answers), and
    the LM loss of those answers (so the LLM learns the reply format with the grounding)."""
    cfg = model.config
    rows = [encode_conversation(model.tokenizer, cfg, 1, [s.text], [answer_text(cfg, len(s.masks) == 2)])
            for s in samples]
    ids = torch.zeros(len(rows), max(len(r) for r, _ in rows), dtype=torch.long)
    labels = torch.full_like(ids, -100)
    att = torch.zeros_like(ids)
    for i, (r, lab) in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        labels[i, :len(r)] = torch.tensor(lab)
        att[i, :len(r)] = 1
    pixels = mllm_ops.preprocess_frames(np.stack([s.frame for s in samples]), cfg.mllm.vision.image_size)
    last = model.lm.model(input_ids=ids, attention_mask=att, pixel_values=pixels, use_cache=False).last_hidden_state
    states = [last[i, int((ids[i] == model.token_ids[token]).int().argmax())]
              for i, s in enumerate(samples) for token, _ in zip((SEG_ACT, SEG_TAR), s.masks)]
    return model.projection(torch.stack(states)), model.text_loss(last, labels)


def decode(sam, image_size: int, frames: np.ndarray, language: torch.Tensor) -> torch.Tensor:
    """Low-res mask logits (N, 1, h, w) of frames (N, H, W, 3), each prompted by its row of ``language``."""
    feats, _, sizes = sam_ops.frame_features(sam, sam_ops.preprocess_frames(frames, image_size))
    return sam_ops.decode(sam, sam_ops.no_memory_features(sam, feats, sizes), sam_ops.high_res_maps(feats, sizes),
                          language)["low_res"]


def decode_samples(model, samples: list[Sample], language: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits of every named thing of a batch prompted by its row of ``language``, and the ground truth."""
    cfg = model.config
    owner, gts, _ = flat(samples)
    logits = decode(model.sam, cfg.sam2.image_size, np.stack([s.frame for s in samples])[owner], language)
    return logits, resize_masks(gts, cfg.sam2.low_res).unsqueeze(1)


def mask_loss(loss_cfg, logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The model's weighted mask loss (BCE + dice) under a ``LossConfig``."""
    bce, dice = mask_losses(logits, gt, loss_cfg)
    return loss_cfg.bce_weight * bce + loss_cfg.dice_weight * dice


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two boolean mask stacks over their last two dims (1 where both are empty)."""
    union = (a | b).sum((-1, -2)).float()
    return torch.where(union > 0, (a & b).sum((-1, -2)).float() / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
def held_out_iou(model, dataset: InterRVOSDataset, n: int = 96, pair_fraction: float = 0.5, seed: int = 1,
                 shuffle_text: bool = False, prompts: AttributePrompts | None = None) -> float:
    """Mean low-res mask IoU over ``n`` random samples of ``dataset``; ``shuffle_text`` gives every sample the text
    of another with as many named things (the score of a model that ignores the description); ``prompts`` prompts
    the decoder with the named attributes instead of the LLM's states (the decoder alone)."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(0, n, 8):
        batch = [draw(dataset, rng, pair_fraction) for _ in range(8)]
        texts = batch
        if shuffle_text:
            texts = [next((o for o in batch[i + 1:] + batch[:i] if len(o.masks) == len(s.masks)), s)
                     for i, s in enumerate(batch)]
        language = prompts(flat(batch)[2]) if prompts is not None else seg_states(model, texts)[0]
        logits, gt = decode_samples(model, batch, language)
        scores.append(mask_iou(logits > 0, gt > 0.5))
    return float(torch.cat(scores).mean())
