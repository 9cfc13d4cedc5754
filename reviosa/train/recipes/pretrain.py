"""Pretraining the tiny ReVIOSa: its stand-in for the InternVL-2.5 and SAM2 checkpoints the real model starts from.

The real model starts from an MLLM that already names what it sees and a SAM2 that already segments what a prompt
points at. From random weights the tiny model never gets there on video: its decoder learns to ignore the language
token long before the random LLM puts anything in it (an expression-blind plateau). This recipe trains exactly
the parameters fine-tuning trains (LoRA LLM, [SEG] rows, projection, SAM2 mask decoder) on single frames with
*appearance* descriptions only (no motion, no interaction, no video), in stages that break the chicken-and-egg:

0. ``encoder``: SAM2's image encoder learns per-pixel shape and colour classes on freshly drawn frames of random
   objects (not the split's videos), then is frozen again (SAM2's own pretraining);
1. ``decoder``: the mask decoder learns to follow a learned attribute prompt (colour / shape / size);
2. ``llm``: the LLM and projection learn to produce that prompt from the text (regression) and the answer text;
3. ``joint``: the whole chain on the mask loss.

Every stage runs AdamW on a one-cycle schedule (a short warm-up to the stage's ``lr``, then annealed to zero).

Each stage's held-out number is recorded: the encoder's per-pixel shape and colour accuracy on fresh frames, the
decoder's IoU with attribute prompts and the whole chain's IoU from the descriptions, on the ``val`` split. Its
result ships with the package as ``reviosa-tiny-base`` (:mod:`reviosa.model.pretrained`); remake it with

    reviosa data synth --out synth --split-names train,val --videos 120,40 --frames 8 --size 64x64
    reviosa pretrain --config tiny --set data=synth/train --set val=synth/val --set out=base [--ship reviosa-tiny-base]

and check a remake against the shipped one with ``--compare reviosa-tiny-base`` (:func:`compare`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reviosa.data.atomic import atomic_write_text
from reviosa.data.format import InterRVOSDataset
from reviosa.data.synthetic import SyntheticConfig
from reviosa.data.synthetic.shapes import COLORS, background, rasterise
from reviosa.model import pretrained
from reviosa.model import sam as sam_ops
from reviosa.model.modeling import ReviosaModel
from reviosa.train import grounding
from reviosa.train.config import PretrainConfig
from reviosa.train.optim import one_cycle_adamw

RECORD_FILE = "pretrain.json"
#: the held-out numbers a record holds, in stage order
HELD_OUT = ("encoder_shape_accuracy", "encoder_colour_accuracy", "decoder_iou", "frame_iou", "frame_iou_shuffled")


def shape_frames(rng: np.random.Generator, n: int, height: int, width: int, world=None):
    """``n`` freshly drawn frames of the synthetic world's objects (its numbers, shapes, colours and sizes), anywhere
    and at any angle, with per-pixel shape and colour classes (0: background; later objects cover earlier ones)."""
    world = world or SyntheticConfig()
    frames = np.empty((n, height, width, 3), np.uint8)
    shape = np.zeros((n, height, width), np.int64)
    colour = np.zeros((n, height, width), np.int64)
    radii = list(world.sizes.values())
    for i in range(n):
        frames[i] = background(rng, height, width, world.background == "textured")
        for _ in range(int(rng.integers(world.min_objects, world.max_objects + 1))):
            k, c = int(rng.integers(len(world.shapes))), int(rng.integers(len(world.colors)))
            r = radii[int(rng.integers(len(radii)))] * min(height, width) * rng.uniform(0.93, 1.07)
            hit = rasterise(world.shapes[k], rng.uniform(0, width), rng.uniform(0, height), r,
                            rng.uniform(0, 2 * np.pi), height, width)
            if hit is None:
                continue
            rows, cols, box = hit
            frames[i, rows, cols][box] = COLORS[world.colors[c]]
            shape[i, rows, cols][box] = 1 + k
            colour[i, rows, cols][box] = 1 + c
    return frames, torch.from_numpy(shape), torch.from_numpy(colour)


class EncoderProbe(torch.nn.Module):
    """Per-pixel shape and colour classes read linearly off every level of SAM2's feature pyramid (strides 4-16:
    the mask decoder reads the high-resolution levels too), scored at stride 4."""

    def __init__(self, dim: int, n_shapes: int, n_colours: int, levels: int = 3):
        super().__init__()
        self.n_shapes = n_shapes
        self.heads = torch.nn.ModuleList(torch.nn.Conv2d(dim, 1 + n_shapes + 1 + n_colours, 1) for _ in range(levels))
        weights = [torch.ones(1 + n) for n in (n_shapes, n_colours)]
        for w in weights:
            w[0] = 0.1  # objects cover ~5-15 % of a frame: the background would win at equal weight
        self.register_buffer("shape_weight", weights[0])
        self.register_buffer("colour_weight", weights[1])

    def forward(self, sam, images: torch.Tensor, shape: torch.Tensor, colour: torch.Tensor):
        """(cross-entropy loss, shape accuracy on object pixels, colour accuracy on object pixels)."""
        size = images.shape[-1] // 4
        levels = sam.image_encoder(images)["backbone_fpn"]
        logits = sum(F.interpolate(head(x), size=(size, size), mode="bilinear", align_corners=False)
                     for head, x in zip(self.heads, levels))
        shape, colour = (F.interpolate(t[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
                         for t in (shape, colour))
        k = 1 + self.n_shapes
        loss = (F.cross_entropy(logits[:, :k], shape, weight=self.shape_weight)
                + F.cross_entropy(logits[:, k:], colour, weight=self.colour_weight))
        fg = shape > 0
        if not fg.any():
            return loss, 0.0, 0.0
        return (loss, float((logits[:, :k].argmax(1) == shape)[fg].float().mean()),
                float((logits[:, k:].argmax(1) == colour)[fg].float().mean()))


class PretrainRecipe:
    """Four-stage pretraining on single synthetic frames (see the module docstring), saved as a checkpoint.

    ``out/pretrain.json``, written last, records the config, the wall time and the held-out numbers: a finished
    ``out`` made with the same config is reused, one made otherwise is refused, an unfinished one is made again.

    Raises:
        ConfigError: the config is invalid (raised while loading it, before this class).
        DatasetError: the split cannot be loaded.
        ValueError: ``out`` holds a pretraining made with another config.
    """

    def __init__(self, cfg: PretrainConfig, *, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.record: dict = {}

    def finished(self) -> bool:
        """True when ``out`` already holds this config's pretraining; refuses another config's."""
        if not (self.out / RECORD_FILE).is_file():
            return False
        made = read_record(self.out)["config"]
        if made != _identity(self.cfg):
            raise ValueError(f"{self.out} holds a pretraining made with {made}, not {_identity(self.cfg)}: delete it "
                             "or pick another folder")
        return True

    def setup(self) -> None:
        """Load the split and build the model (seeded) with its attribute prompts."""
        cfg = self.cfg
        self.t0 = time.perf_counter()
        self.train_ds = InterRVOSDataset.load(cfg.data)
        self.val_ds = InterRVOSDataset.load(cfg.val) if cfg.val else None
        self.world = SyntheticConfig.from_yaml(cfg.world)
        torch.manual_seed(cfg.seed)
        self.model = ReviosaModel.from_config(cfg.model).train()
        self.prompts = grounding.AttributePrompts(self.model.sam.hidden_dim)
        self.rng = np.random.default_rng(cfg.seed)

    def train(self) -> None:
        """Stage 0 (if any steps), then the decoder, LLM and joint stages."""
        cfg, model = self.cfg, self.model
        if cfg.stages.encoder.steps:
            self.record.update(self._encoder_stage())
        sam_params = [p for p in model.sam.parameters() if p.requires_grad]
        llm_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("sam.")]
        for name, params in (("decoder", sam_params + list(self.prompts.parameters())), ("llm", llm_params),
                             ("joint", sam_params + llm_params)):
            self._stage(name, params)
            if name == "decoder" and self.val_ds is not None:
                self.record["decoder_iou"] = grounding.held_out_iou(model, self.val_ds, prompts=self.prompts)

    def _encoder_stage(self) -> dict[str, float]:
        """SAM2's image encoder learns shapes and colours, frozen after; its held-out per-pixel accuracies."""
        from tqdm import tqdm

        stage, model, world = self.cfg.stages.encoder, self.model, self.world
        # frames of the data's size, so objects reach the encoder at the scale they have in the videos
        height, width = self.train_ds.frame_size(next(iter(self.train_ds.videos.values())))
        probe = EncoderProbe(model.sam.image_encoder.neck.d_model, len(world.shapes), len(world.colors),
                             len(model.sam.image_encoder.neck.backbone_channel_list) - model.sam.image_encoder.scalp)
        params = list(model.sam.image_encoder.parameters())
        for p in params:
            p.requires_grad_(True)
        opt, sched = one_cycle_adamw(params + list(probe.parameters()), stage.lr, stage.steps)
        accs: list[float] = []
        bar = tqdm(range(stage.steps), desc="pretrain: encoder", disable=not self.progress, mininterval=10)
        for _ in bar:
            frames, shape, colour = shape_frames(self.rng, self.cfg.batch_size, height, width, world)
            loss, acc, _ = probe(model.sam, sam_ops.preprocess_frames(frames, model.config.sam2.image_size), shape,
                                 colour)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            accs = (accs + [acc])[-50:]
            bar.set_postfix(loss=f"{loss.item():.3f}", shape_acc=f"{np.mean(accs):.3f}", refresh=False)
        sam_ops.freeze_for_training(model.sam)
        # held out: frames drawn by their own generator, never seen in training
        rng, held = np.random.default_rng(self.cfg.seed + 10_000), []
        with torch.no_grad():
            for _ in range(25):
                frames, shape, colour = shape_frames(rng, 8, height, width, world)
                held.append(probe(model.sam, sam_ops.preprocess_frames(frames, model.config.sam2.image_size), shape,
                                  colour)[1:])
        return {"encoder_shape_accuracy": float(np.mean([a for a, _ in held])),
                "encoder_colour_accuracy": float(np.mean([c for _, c in held]))}

    def _stage(self, name: str, params: list[torch.nn.Parameter]) -> None:
        """One of the decoder / llm / joint stages."""
        from tqdm import tqdm

        stage, model, loss_cfg = getattr(self.cfg.stages, name), self.model, self.model.config.loss
        if not stage.steps:
            return
        # annealed like stage 0: at a constant rate the decoder's held-out IoU sat ~0.04 below where the decay took it
        opt, sched = one_cycle_adamw(params, stage.lr, stage.steps)
        bar = tqdm(range(stage.steps), desc=f"pretrain: {name}", disable=not self.progress, mininterval=10)
        ema = None
        for _ in bar:
            batch = [grounding.draw(self.train_ds, self.rng, self.cfg.pair_fraction)
                     for _ in range(self.cfg.batch_size)]
            if name == "decoder":
                loss = grounding.mask_loss(loss_cfg, *grounding.decode_samples(
                    model, batch, self.prompts(grounding.flat(batch)[2])))
            else:
                lang, text = grounding.seg_states(model, batch)
                if name == "llm":
                    with torch.no_grad():
                        want = self.prompts(grounding.flat(batch)[2])
                    loss = F.mse_loss(lang, want)
                else:
                    loss = grounding.mask_loss(loss_cfg, *grounding.decode_samples(model, batch, lang))
                loss = loss + loss_cfg.text_weight * text
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)

    def save(self) -> dict:
        """``save_pretrained`` to ``out``, score the held-out split, then write the record (last); the record."""
        self.model.eval().save_pretrained(self.out)
        self.record["wall_s"] = time.perf_counter() - self.t0
        if self.val_ds is not None:
            self.record["frame_iou"] = grounding.held_out_iou(self.model, self.val_ds)
            self.record["frame_iou_shuffled"] = grounding.held_out_iou(self.model, self.val_ds, shuffle_text=True)
        self.record = {"config": _identity(self.cfg), **self.record}
        atomic_write_text(self.out / RECORD_FILE, json.dumps(self.record, indent=1))
        return self.record

    def cleanup(self) -> None:
        """Nothing is held open between stages; kept for the recipe lifecycle."""


def _identity(cfg: PretrainConfig) -> dict:
    """What makes two pretrainings the same: the config without its output folder."""
    return cfg.model_dump(mode="json", exclude={"out"})


def read_record(out: str | Path) -> dict:
    """What a finished pretraining recorded: its config, wall time, stage 0's shape accuracy, held-out IoU."""
    return json.loads((Path(out) / RECORD_FILE).read_text())


def reference(name_or_dir: str | Path) -> tuple[dict, dict[str, str]]:
    """The record and file hashes of a shipped base (its manifest) or of a finished pretraining folder."""
    if pretrained.is_shipped(name_or_dir):
        body = pretrained.manifest(str(name_or_dir))
        return body["record"], body["sha256"]
    root = Path(name_or_dir)
    if not (root / RECORD_FILE).is_file():
        raise FileNotFoundError(f"{root}: no {RECORD_FILE}; neither a shipped name {list(pretrained.NAMES)} nor a "
                                "finished pretraining folder")
    hashed = [rel for rel in pretrained.files(root) if rel != RECORD_FILE]  # compared by its numbers instead
    return read_record(root), {rel: pretrained.sha256(root / rel) for rel in hashed}


def compare(out: str | Path, name_or_dir: str | Path, tolerance: float = 0.0) -> dict:
    """How the finished pretraining in ``out`` matches a reference: config, held-out numbers and file hashes.

    ``ok`` needs the same config and every held-out number of the reference within ``tolerance``; file hashes are
    reported, not required (bit-identical weights need the same torch build and thread count), and the record file
    is compared by its numbers, since its wall time always differs.
    """
    made, made_root = read_record(out), Path(out)
    want, want_sha = reference(name_or_dir)
    numbers = {}
    for key in HELD_OUT:
        if key in want or key in made:
            a, b = made.get(key), want.get(key)
            numbers[key] = {"made": a, "reference": b, "diff": None if a is None or b is None else a - b}
    files = pretrained.file_states(made_root, want_sha, ignore=frozenset({RECORD_FILE}))
    same_config = made["config"] == want["config"]
    close = all(n["diff"] is not None and abs(n["diff"]) <= tolerance for n in numbers.values())
    return {"config": "equal" if same_config else "differs", "numbers": numbers, "files": files,
            "wall_s": {"made": made.get("wall_s"), "reference": want.get("wall_s")}, "tolerance": tolerance,
            "ok": same_config and close}


def run(cfg: PretrainConfig, *, progress: bool = True) -> dict:
    """Pretrain into ``cfg.out`` (or reuse a finished one made with the same config); the record."""
    recipe = PretrainRecipe(cfg, progress=progress)
    if recipe.finished():
        return read_record(cfg.out)
    try:
        recipe.setup()
        recipe.train()
        return recipe.save()
    finally:
        recipe.cleanup()
