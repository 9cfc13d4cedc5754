"""Stage 0, SAM2 mask tracks from prompts: one conditioning frame per object, SAM2 memory forward and backward.

This drives ``SAM2Base.track_step`` (the per-frame step of SAM2's video predictor) directly, because the
packaged ``SAM2VideoPredictor`` imports torchvision, which cannot sit next to the CPU torch here. What it keeps
from the predictor: frames resized to a square and ImageNet-normalised; a box enters the prompt encoder as two
corner points with labels 2 and 3, before any clicks; a mask prompt is resized to the model's input size and,
with ``use_mask_input_as_output_without_sam``, becomes the output (and the memory) of its frame; predicted
low-resolution logits are resized bilinearly to the original frame size and thresholded at 0.

Differences, on purpose: the prompted frame's output is the prompt mask itself at the original resolution (the
predictor's round trip through 1/4-resolution logits would blur it); hole filling (a CUDA extension) is not
applied; memories older than SAM2 can attend to are dropped so memory stays bounded on long videos, and the
backward pass (prompt not on frame 0) starts from the prompted frame's memory alone.

Quality: with ``sam2_config: tiny`` and no checkpoint the weights are random, so every mask except a copied mask
prompt is meaningless; useful tracks need the official SAM2 checkpoint (``sam2_hiera_large.pt``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reviosa.annotate.config import MaskTrackConfig
from reviosa.annotate.prompts_file import ObjectPrompt, check_prompts, prompt_frame, prompt_mask
from reviosa.data.atomic import atomic_write_text
from reviosa.data.format import InterRVOSDataset, Video
from reviosa.data.names import inside
from reviosa.data.rle import RLE, encode_mask
from reviosa.model.config import ModelConfig, SAM2Config

TRACKS_DIR = "tracks"


class MaskTrackError(ValueError):
    """SAM2 tracking cannot run as configured (no weights, bad SAM2 config); the message says what to pass."""


def resolve_sam2_config(name: str) -> SAM2Config:
    """``tiny`` (the tiny model config's SAM2), ``large`` (sam2_hiera_l) or a YAML file (SAM2Config or model)."""
    if name == "large":
        return SAM2Config()
    if name == "tiny":
        return ModelConfig.from_yaml("tiny").sam2
    raw, path = ModelConfig.read_raw(name)  # a shipped model config's name, or a path (ConfigError if neither)
    section = raw.get("sam2", raw)
    if not isinstance(section, dict):
        raise MaskTrackError(f"{path}: `sam2` must be a mapping of SAM2Config fields")
    return SAM2Config.from_dict(section, source=str(path))


class SAM2Tracker:
    """A SAM2 model that turns per-object prompts into (T, H, W) mask tracks of one video at a time."""

    def __init__(self, cfg: MaskTrackConfig):
        from reviosa.model.checkpoint import load_sam2_weights
        from reviosa.model.sam import build_sam2

        self.cfg = cfg
        self.sam2_cfg = resolve_sam2_config(cfg.sam2_config)
        checkpoint = cfg.sam2_checkpoint or self.sam2_cfg.checkpoint
        if checkpoint is None and not cfg.allow_random_weights:
            raise MaskTrackError("no SAM2 checkpoint: pass the official sam2_hiera_large.pt (--sam2 CKPT), or "
                                "--sam2-config tiny for a random model that only copies mask prompts (demo/tests)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            sam = build_sam2(self.sam2_cfg)
        if checkpoint is not None:
            load_sam2_weights(sam, checkpoint)
        self.sam = sam.eval().to(cfg.device)
        if not self.sam.use_mask_input_as_output_without_sam:
            raise MaskTrackError("the SAM2 build must use mask prompts as the output of their frame")
        self.frames_encoded = 0  # counts image-encoder calls (tests check that resumed videos cost nothing)
        self.max_memories = 0  # most per-object frame memories ever held (bounded, whatever the video length)
        self.fingerprint = _model_fingerprint(cfg)

    @property
    def image_size(self) -> int:
        """Side of SAM2's square input."""
        return self.sam.image_size

    @torch.inference_mode()
    def track_video(self, ds: InterRVOSDataset, video: Video, prompts: dict[int, ObjectPrompt], *,
                    progress: bool = False) -> dict[int, list[RLE | None]]:
        """Mask tracks ``{obj_id: [RLE | None per frame]}`` of the prompted objects (None = absent)."""
        from tqdm import tqdm

        check_prompts(ds, {video.name: prompts})
        h, w = ds.frame_size(video)
        n = video.num_frames
        start = {oid: prompt_frame(video, p) for oid, p in prompts.items()}
        tracks: dict[int, list[RLE | None]] = {oid: [None] * n for oid in prompts}
        states = {oid: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}} for oid in prompts}
        keep = max(self.sam.num_maskmem, self.sam.max_obj_ptrs_in_encoder) + 1
        backward = {oid for oid, f in start.items() if f > 0}
        first = min(start.values(), default=n)
        last_back = max((start[o] for o in backward), default=0)
        total = (n - first) + last_back
        with tqdm(total=total, desc=f"track {video.name}", unit="frame", disable=not progress, leave=False) as bar:
            for t in range(first, n):
                active = [o for o in prompts if start[o] <= t]
                self._step(ds, video, t, active, start, prompts, states, tracks, (h, w), reverse=False, keep=keep)
                bar.update()
            for o in backward:  # the backward pass starts again from the prompted frame's memory
                states[o]["non_cond_frame_outputs"].clear()
            for t in range(last_back - 1, -1, -1):
                active = [o for o in backward if start[o] > t]
                self._step(ds, video, t, active, start, prompts, states, tracks, (h, w), reverse=True, keep=keep)
                bar.update()
        return tracks

    def _step(self, ds, video, t, active, start, prompts, states, tracks, size, *, reverse: bool, keep: int) -> None:
        if not active:
            return
        from reviosa.model.sam import preprocess_frames

        image = preprocess_frames(np.array(ds.read_frame(video, t)[None]), self.image_size).to(self.cfg.device)
        self.frames_encoded += 1
        _, feats, pos, sizes = self.sam._prepare_backbone_features(self.sam.forward_image(image))
        for o in active:
            cond = start[o] == t
            points, mask = self._inputs(prompts[o], size) if cond else (None, None)
            out = self.sam.track_step(frame_idx=t, is_init_cond_frame=cond, current_vision_feats=feats,
                                      current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=points,
                                      mask_inputs=mask, output_dict=states[o], num_frames=video.num_frames,
                                      track_in_reverse=reverse, run_mem_encoder=True)
            out = {k: v for k, v in out.items() if k not in ("pred_masks_high_res", "multistep_pred_masks",
                                                             "multistep_pred_ious", "multistep_point_inputs")}
            bucket = "cond_frame_outputs" if cond else "non_cond_frame_outputs"
            states[o][bucket][t] = out
            states[o]["non_cond_frame_outputs"].pop(t + keep if reverse else t - keep, None)
            self.max_memories = max(self.max_memories, len(states[o]["non_cond_frame_outputs"]))
            if cond and prompts[o].mask is not None:
                m = prompt_mask(prompts[o])  # the prompt mask is the output of its frame, at full resolution
            else:
                logits = F.interpolate(out["pred_masks"].float(), size=size, mode="bilinear", align_corners=False)
                m = (logits[0, 0] > 0).cpu().numpy()
            tracks[o][t] = encode_mask(m) if m.any() else None

    def _inputs(self, prompt: ObjectPrompt, size: tuple[int, int]):
        """SAM2 ``point_inputs`` / ``mask_inputs`` of one prompt, in the model's input coordinates."""
        h, w = size
        s = self.image_size
        dev = self.cfg.device
        if prompt.mask is not None:
            m = torch.from_numpy(prompt_mask(prompt)).float()[None, None]
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            return None, (m >= 0.5).float().to(dev)
        coords: list[tuple[float, float]] = []
        labels: list[int] = []
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            coords += [(x0, y0), (x1, y1)]
            labels += [2, 3]
        coords += list(prompt.points or [])
        labels += list(prompt.labels or [])
        xy = torch.tensor(coords, dtype=torch.float32) / torch.tensor([w, h], dtype=torch.float32) * s
        return {"point_coords": xy[None].to(dev), "point_labels": torch.tensor(labels, dtype=torch.int32)[None].to(dev)
                }, None


def state_path(state_dir: str | os.PathLike, video: str) -> Path:
    """Where one video's finished tracks are stored (the video name must stay inside ``state_dir``)."""
    return inside(state_dir, f"{video}.json", what="video name")


def _video_key(tracker_fp: str, video: Video, prompts: dict[int, ObjectPrompt]) -> str:
    body = json.dumps({"tracker": tracker_fp, "frames": video.frames,
                       "prompts": {str(o): p.model_dump(mode="json") for o, p in sorted(prompts.items())}},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:20]


def track_split(ds: InterRVOSDataset, prompts: dict[str, dict[int, ObjectPrompt]], cfg: MaskTrackConfig,
                state_dir: str | os.PathLike, *, progress: bool = True, tracker: SAM2Tracker | None = None
                ) -> tuple[dict[int, list[RLE | None]], dict[str, Any]]:
    """Track every prompted object that has no given track; one atomic file per video under ``state_dir``.

    Returns ``({anno_id: track}, counts)``; a rerun reuses finished videos whose prompts and model match.
    SAM2 is only built when some video still needs tracking.
    """
    from tqdm import tqdm

    check_prompts(ds, prompts)
    todo = {v: {o: p for o, p in objs.items() if ds.videos[v].objects[o].anno_id not in ds.mask_dict}
            for v, objs in prompts.items()}
    todo = {v: objs for v, objs in todo.items() if objs}
    given = sum(1 for v in ds.videos.values() for o in v.objects.values() if o.anno_id in ds.mask_dict)
    model_fp = _model_fingerprint(cfg) if tracker is None else tracker.fingerprint
    out: dict[int, list[RLE | None]] = {}
    resumed = 0
    with tqdm(total=len(todo), desc="track", unit="video", disable=not progress) as bar:
        for name, objs in todo.items():
            video = ds.videos[name]
            key = _video_key(model_fp, video, objs)
            path = state_path(state_dir, name)
            stored = _stored(path, key)
            if stored is None:
                if tracker is None:
                    tracker = SAM2Tracker(cfg)
                tracks = tracker.track_video(ds, video, objs, progress=progress)
                stored = {str(video.objects[o].anno_id): t for o, t in tracks.items()}
                atomic_write_text(path, json.dumps({"key": key, "video": name, "tracks": stored}))
            else:
                resumed += 1
            out.update({int(a): t for a, t in stored.items()})
            bar.update()
    counts = {"objects_given": given, "objects_tracked": len(out), "videos_tracked": len(todo),
              "videos_tracked_resumed": resumed}
    return out, counts


def _model_fingerprint(cfg: MaskTrackConfig) -> str:
    """The tracker's fingerprint without building it (config, checkpoint name, seed)."""
    sam2 = resolve_sam2_config(cfg.sam2_config)
    checkpoint = cfg.sam2_checkpoint or sam2.checkpoint
    blob = json.dumps({"sam2": sam2.model_dump(mode="json"), "checkpoint": checkpoint,
                       "seed": None if checkpoint else cfg.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stored(path: Path, key: str) -> dict[str, list] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec["tracks"] if rec.get("key") == key else None

