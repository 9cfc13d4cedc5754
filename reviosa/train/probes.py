"""What could the tiny SAM2 reach with the language understood perfectly? The perfect-grounding probe.

A SAM2 (random, or a pretrained one's weights; image encoder frozen, mask decoder trained exactly as ReVIOSa trains
it) learns to segment an object from a prompt that is either a learned embedding of its true attributes (``oracle``:
colour, shape, size or a subset) or the tiny LLM's projected ``[SEG_ACT]`` state for its description (``llm``, with
the frame: ``llm+frame``). :func:`grounding_ceiling` then scores held-out videos with the InterRVOS rules, every
referent prompted with its true attributes: the bound on what ReVIOSa's decoder could reach with a perfect LLM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from reviosa.data.format import InterRVOSDataset
from reviosa.data.synthetic.expressions import appearance_view, describe
from reviosa.model import mllm as mllm_ops
from reviosa.model import sam as sam_ops
from reviosa.model.batch import resize_masks
from reviosa.model.config import ModelConfig
from reviosa.model.modeling import ReviosaModel
from reviosa.model.tokenizer import SEG_ACT, encode_conversation
from reviosa.train.grounding import AttributePrompts, decode, mask_iou, mask_loss
from reviosa.train.optim import one_cycle_adamw
from reviosa.train.validation import score_expression, summarize

#: probe rows: the attributes each prompt names (probe names; ``shape`` is the object's category)
ROWS: dict[str, tuple[str, ...]] = {"none": (), "colour": ("color",), "shape": ("category",), "size": ("size",),
                                    "all": ("color", "category", "size")}

Prompter = Literal["oracle", "llm", "llm+frame"]
#: (frames (N, H, W, 3), one dataset object per frame) -> low-res mask logits (N, 1, h, w)
Segmenter = Callable[[np.ndarray, list], torch.Tensor]


def _draw(dataset: InterRVOSDataset, rng: np.random.Generator, n: int, low: int):
    """``n`` random (frame, visible object) samples: RGB frames, low-res GT masks and the objects."""
    pairs = [(v, o) for v in dataset.videos.values() for o in v.objects.values()]
    images, masks, objs = [], [], []
    while len(images) < n:
        video, obj = pairs[int(rng.integers(len(pairs)))]
        t = int(rng.integers(video.num_frames))
        mask = dataset.object_masks(video, obj.obj_id)[t]
        if not mask.any():
            continue
        images.append(dataset.read_frames(video, [t])[0])
        masks.append(mask)
        objs.append(obj)
    return np.stack(images), resize_masks(np.stack(masks), low).unsqueeze(1), objs


def _llm_prompt(cfg: ModelConfig, with_frame: bool):
    """The tiny ReVIOSa's projected [SEG_ACT] state for an object's full description: (prompt, parameters)."""
    model = ReviosaModel.from_config(cfg)
    seg = model.token_ids[SEG_ACT]

    def prompt(objs, frames):
        rows = [encode_conversation(model.tokenizer, cfg, int(with_frame), [describe(appearance_view(o), "full")],
                                    [cfg.prompt.answers_actor[0]])[0] for o in objs]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            att[i, :len(r)] = 1
        pixels = mllm_ops.preprocess_frames(frames, cfg.mllm.vision.image_size) if with_frame else None
        last = model.lm.model(input_ids=ids, attention_mask=att, pixel_values=pixels, use_cache=False).last_hidden_state
        return model.projection(last[torch.arange(len(rows)), (ids == seg).int().argmax(1)])

    return prompt, [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("sam.")]


def train_prompted_decoder(cfg: ModelConfig, train: InterRVOSDataset, prompter: Prompter = "oracle",
                           attributes: tuple[str, ...] = (), steps: int = 1000, batch_size: int = 8, lr: float = 1e-3,
                           seed: int = 0, sam_state: dict | None = None) -> Segmenter:
    """A SAM2 mask decoder trained on ``train`` frames with ``prompter`` prompts (``oracle``: of ``attributes``).

    ``sam_state``: a SAM2 state dict (a pretrained segmenter's image encoder and mask decoder) to start from instead
    of random weights; the encoder stays frozen either way.
    """
    torch.manual_seed(seed)
    sam = sam_ops.build_sam2(cfg.sam2)
    if sam_state is not None:
        sam.load_state_dict(sam_state)
    sam_ops.freeze_for_training(sam)
    if prompter == "oracle":
        table = AttributePrompts(sam.hidden_dim)

        def prompt(objs, frames):
            return table([(attributes, appearance_view(o)) for o in objs])

        extra = list(table.parameters())
    else:
        prompt, extra = _llm_prompt(cfg, with_frame=prompter == "llm+frame")
    # annealed, as pretraining's decoder stage is: at a constant rate the decoder ends short of what it can reach
    opt, sched = one_cycle_adamw([p for p in sam.parameters() if p.requires_grad] + extra, lr, steps)

    def run(frames: np.ndarray, objs: list) -> torch.Tensor:
        return decode(sam, cfg.sam2.image_size, frames, prompt(objs, frames))

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        frames, gt, objs = _draw(train, rng, batch_size, cfg.sam2.low_res)
        loss = mask_loss(cfg.loss, run(frames, objs), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return run


@torch.no_grad()
def frame_iou(run: Segmenter, cfg: ModelConfig, val: InterRVOSDataset, batches: int = 20, batch_size: int = 8,
              seed: int = 1) -> float:
    """Held-out single-frame IoU of a trained segmenter on random visible objects of ``val``."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(batches):
        frames, gt, objs = _draw(val, rng, batch_size, cfg.sam2.low_res)
        scores.append(mask_iou(run(frames, objs) > 0, gt > 0.5))
    return float(torch.cat(scores).mean())


def grounding_ceiling(cfg: ModelConfig, train: InterRVOSDataset, val: InterRVOSDataset, attributes: tuple[str, ...],
                      steps: int = 1000, batch_size: int = 8, lr: float = 1e-3, seed: int = 0,
                      max_videos: int | None = None, sam_state: dict | None = None) -> dict[str, float]:
    """Actor/Target/RVOS J&F of perfect grounding: every referent prompted with its true ``attributes``.

    Each expression's actor (target) track is the union of its referents' masks, decoded frame by frame and
    scored with the trainer's validation rules.
    """
    run = train_prompted_decoder(cfg, train, "oracle", attributes, steps, batch_size, lr, seed, sam_state)
    rows = []
    with torch.no_grad():
        for video in list(val.videos.values())[:max_videos]:
            frames = val.read_frames(video)
            cache: dict[int, np.ndarray] = {}

            def track(obj_ids) -> np.ndarray:
                for oid in obj_ids:
                    if oid not in cache:
                        logits = run(frames, [video.objects[oid]] * len(frames))
                        logits = F.interpolate(logits, size=frames.shape[1:3], mode="bilinear", align_corners=False)
                        cache[oid] = (logits[:, 0] > 0).numpy()
                return np.any([cache[o] for o in obj_ids], axis=0)

            for exp in video.expressions.values():
                gt_tar = val.union_masks(video, exp.target_anno_ids) if exp.has_target else None
                rows.append(score_expression(video.name, exp, val.union_masks(video, exp.anno_ids), gt_tar,
                                             track(exp.obj_ids), track(exp.target_obj_ids) if exp.has_target else None))
    return summarize(rows)
