"""Training samples from an InterRVOS split: one item per (video, anchor expression), deterministic per epoch.

Every expression of the split is an anchor once per epoch, so interaction and non-interaction expressions are
mixed in their natural proportion; the other expressions of a sample come from the same video. The frames and
companions of item ``i`` in epoch ``e`` depend only on ``(seed, e, i)``, so a resumed run sees exactly the
samples an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from reviosa.data.format import InterRVOSDataset
from reviosa.model.batch import ReviosaSample, build_sample, collate
from reviosa.model.config import ModelConfig
from reviosa.model.tokenizer import PAD
from reviosa.train.config import AugmentConfig


def sample_frames(n_frames: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` sorted random frame indices (with repeats only when the video is shorter than ``k``)."""
    return sorted(rng.choice(n_frames, size=k, replace=n_frames < k).tolist())


def augment(frames: np.ndarray, masks: list[np.ndarray], cfg: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """One random augmentation for the whole clip (frames (T, H, W, 3) uint8, masks (..., H, W) bool)."""
    if cfg.hflip and rng.random() < cfg.hflip:
        frames = frames[:, :, ::-1]
        masks = [m[..., ::-1] for m in masks]
    if cfg.brightness or cfg.contrast:
        x = frames.astype(np.float32)
        scale = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        shift = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
        mean = x.mean()
        frames = np.clip((x - mean) * scale + mean + shift, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames), [np.ascontiguousarray(m) for m in masks]


class ExpressionClips(Dataset):
    """Map-style dataset of training samples; ``set_epoch`` changes the random draws of every item.

    ``unit`` says what one item of an epoch is: ``expression`` (every expression anchors one sample, its companions
    drawn from the same video) or ``video`` (every video is one sample, as in the official recipe: a random
    interaction with roles first when the video has one, then the other expressions; a video with too few repeats
    some).
    """

    def __init__(self, dataset: InterRVOSDataset, cfg: ModelConfig, tokenizer, expressions_per_sample: int = 2,
                 augment_cfg: AugmentConfig | None = None, seed: int = 0, unit: str = "expression"):
        self.dataset = dataset
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.k = expressions_per_sample
        self.augment = augment_cfg or AugmentConfig()
        self.seed = seed
        self.epoch = 0
        if unit not in ("expression", "video"):
            raise ValueError(f"unit must be expression or video, got {unit!r}")
        self.unit = unit
        if unit == "video":
            self.items = [(v.name, "") for v in dataset.videos.values() if v.expressions]
        else:
            self.items = [(v.name, e.exp_id) for v, e in dataset.iter_expressions()]
        if not self.items:
            raise ValueError(f"{dataset.root}: the training split has no expressions")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of another epoch (call together with the sampler's ``set_epoch``)."""
        self.epoch = epoch

    def draw(self, index: int) -> tuple[str, list[str], list[int]]:
        """(video, expression ids with the anchor first, frame indices) of one item in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        vid, anchor = self.items[index]
        video = self.dataset.videos[vid]
        if self.unit == "video":
            exp_ids = _video_expressions(video, self.k, rng)
        else:
            others = [e for e in video.expressions if e != anchor]
            need = self.k - 1
            extra = rng.choice(others or [anchor], size=need, replace=len(others) < need).tolist() if need else []
            exp_ids = [anchor, *map(str, extra)]
        return vid, exp_ids, sample_frames(video.num_frames, self.cfg.train_frames, rng)

    def __getitem__(self, index: int) -> ReviosaSample:
        vid, exp_ids, frame_idx = self.draw(index)
        ds, video = self.dataset, self.dataset.videos[vid]
        exps = [video.expressions[e] for e in exp_ids]
        frames = ds.read_frames(video, frame_idx)
        act = np.stack([ds.union_masks(video, e.anno_ids)[frame_idx] for e in exps])
        tar = np.stack([ds.union_masks(video, e.target_anno_ids)[frame_idx] for e in exps])
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        frames, (act, tar) = augment(frames, [act, tar], self.augment, rng)
        text_rng = np.random.default_rng([self.seed, self.epoch, index, 2])
        return build_sample(self.cfg, self.tokenizer, frames, [e.text for e in exps], [e.has_target for e in exps],
                            act, tar, rng=text_rng, video=vid, exp_ids=exp_ids, frame_indices=frame_idx)


def _video_expressions(video, k: int, rng: np.random.Generator) -> list[str]:
    """``k`` expression ids of a video: a random interaction with roles first (if any), then the others; all of them
    and some again when the video has no more than ``k``."""
    ids = list(video.expressions)
    roles = [e for e in ids if video.expressions[e].has_target]
    first = [str(rng.choice(roles))] if roles else []
    rest = [e for e in ids if e not in first]
    if len(ids) <= k:
        chosen = first + rest
        return chosen + [str(e) for e in rng.choice(ids, size=k - len(chosen), replace=True)]
    return first + [str(e) for e in rng.choice(rest, size=k - len(first), replace=False)]


def sample_id(sample: ReviosaSample) -> str:
    """``video/exp+exp@f,f,...``: what a sample holds, for the data-order log."""
    return f"{sample.video}/{'+'.join(sample.exp_ids)}@{','.join(map(str, sample.frame_indices))}"


class Collator:
    """Picklable collate function: (batch right-padded with the tokenizer's pad id, sample ids)."""

    def __init__(self, tokenizer):
        self.pad_id = tokenizer.convert_tokens_to_ids(PAD)

    def __call__(self, samples: list[ReviosaSample]):
        return collate(samples, self.pad_id), [sample_id(s) for s in samples]


class ResumableSampler(torch.utils.data.Sampler):
    """A DistributedSampler's epoch order with the first ``start`` entries skipped (resume mid-epoch)."""

    def __init__(self, inner):
        self.inner = inner
        self.start = 0

    def __iter__(self):
        return iter(list(self.inner)[self.start:])

    def __len__(self) -> int:
        return len(self.inner) - self.start

    def set_epoch(self, epoch: int) -> None:
        """Shuffle order of another epoch (DistributedSampler's)."""
        self.inner.set_epoch(epoch)


def make_loader(clips: ExpressionClips, batch_size: int, rank: int, world_size: int, seed: int,
                workers: int = 0) -> tuple[torch.utils.data.DataLoader, "ResumableSampler"]:
    """A loader over this rank's shard (every rank gets the same number of batches; the tail is dropped)."""
    sampler = ResumableSampler(DistributedSampler(clips, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                                  drop_last=True))
    loader = torch.utils.data.DataLoader(clips, batch_size=batch_size, sampler=sampler, drop_last=True,
                                         collate_fn=Collator(clips.tokenizer), num_workers=workers)
    if len(loader) == 0:
        raise ValueError(f"the training split has {len(clips)} expressions: too few for batch_size {batch_size} "
                         f"on {world_size} process(es)")
    return loader, sampler
