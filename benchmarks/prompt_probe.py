"""Where does the tiny ReVIOSa lose the expression? Three probes of the SAM2 half on synthetic videos.

``ceiling``: how well can the tiny SAM2 (random Hiera frozen, mask decoder trained, exactly as ReVIOSa trains
it) segment an object when its language token is a *perfect* prompt, i.e. a learned embedding of the object's
true attributes instead of the LLM's [SEG] state? Rows: no prompt (a zero token: the expression-blind
reference), colour, shape, size, all three. Then the same task with the prompt made the ReVIOSa way: the tiny
LLM (LoRA) reads the object's description ("the large red circle", text only or with the frame) and the
projection of its [SEG_ACT] state is the token, LLM and decoder trained together. Held-out IoU on single frames.

``grounding``: the same oracle prompts scored like the learning benchmark: every referent of a held-out
expression is prompted with its true attributes (actor and target tracks = unions of their referents, decoded
frame by frame) and the InterRVOS Actor / Target / RVOS J&F are reported. This is what ReVIOSa's decoder could
reach if its LLM grounded every expression perfectly into those attributes: with a colour prompt the tiny SAM2
is near the issue's target, with a shape prompt (all that a class-level "the circle chasing the square" names)
it is no better than no prompt.

``reads-language``: does a trained checkpoint's decoder use the language token at all? For held-out videos it
decodes the first frame with the [SEG_ACT] embedding of every expression and reports the mean mask IoU between
expressions that refer to different objects, and between each expression's mask and the mask decoded with a
zero token. Values near 1 mean the decoder ignores the language and segments from the image alone.

    python benchmarks/prompt_probe.py ceiling --data runs/learn_synthetic/data          # ~10 min on 2 CPU cores
    python benchmarks/prompt_probe.py grounding --data runs/learn_synthetic/data        # ~10 min on 2 CPU cores
    python benchmarks/prompt_probe.py reads-language --model runs/learn_synthetic/variant-iv/final \\
        --data runs/learn_synthetic/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ATTRIBUTES = {"colour": "color", "shape": None, "size": "size"}  # probe name -> ObjectInfo attribute (None: category)


def _attribute(obj, name: str) -> str:
    key = ATTRIBUTES[name]
    return obj.category if key is None else obj.attributes[key]


def _objects(dataset) -> list[tuple]:
    """(video, object) pairs of a split."""
    return [(v, o) for v in dataset.videos.values() for o in v.objects.values()]


def _draw(dataset, pairs, rng, n: int, low: int):
    """``n`` random (frame, visible object) samples: RGB frames, low-res GT masks and the objects."""
    from reviosa.data.video import read_frames
    from reviosa.model.batch import resize_masks

    images, masks, objs = [], [], []
    while len(images) < n:
        video, obj = pairs[int(rng.integers(len(pairs)))]
        t = int(rng.integers(video.num_frames))
        mask = dataset.object_masks(video, obj.obj_id)[t]
        if not mask.any():
            continue
        images.append(read_frames(dataset, video, [t])[0])
        masks.append(mask)
        objs.append(obj)
    return np.stack(images), resize_masks(np.stack(masks), low).unsqueeze(1), objs


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two boolean mask stacks over their last two dims (1 where both are empty)."""
    union = (a | b).sum((-1, -2)).float()
    return torch.where(union > 0, (a & b).sum((-1, -2)).float() / union.clamp(min=1), torch.ones_like(union))


def object_view(obj):
    """A dataset object as the synthetic generator's ``ObjectView`` (appearance only), for its wording helpers."""
    from reviosa.data.synthetic.expressions import ObjectView

    return ObjectView(obj.obj_id, obj.category, obj.attributes["color"], obj.attributes["size"], None, frozenset())


def _description(obj) -> str:
    """The object's full appearance description, worded by the synthetic generator ("the large red circle")."""
    from reviosa.data.synthetic.expressions import describe

    return describe(object_view(obj), "full")


def _oracle_prompter(used: tuple[str, ...], objects: list, dim: int):
    """Learned embeddings of the objects' true attributes, summed: (prompt function, its parameters)."""
    vocab = {name: sorted({_attribute(o, name) for o in objects}) for name in used}
    tables = torch.nn.ModuleDict({name: torch.nn.Embedding(len(v), dim) for name, v in vocab.items()})

    def prompt(objs, frames):
        lang = torch.zeros(len(objs), dim)
        for name in used:
            lang = lang + tables[name](torch.tensor([vocab[name].index(_attribute(o, name)) for o in objs]))
        return lang

    return prompt, list(tables.parameters())


def _llm_prompter(cfg, with_frame: bool):
    """The tiny ReVIOSa's projected [SEG_ACT] state for the object's description: (prompt function, parameters)."""
    from reviosa.model import mllm as mllm_ops
    from reviosa.model.checkpoint import build_model
    from reviosa.model.tokenizer import SEG_ACT, encode_conversation

    model = build_model(cfg)
    seg = model.token_ids[SEG_ACT]

    def prompt(objs, frames):
        rows = [encode_conversation(model.tokenizer, cfg, int(with_frame), [_description(o)],
                                    [cfg.prompt.answer_actor])[0] for o in objs]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            att[i, :len(r)] = 1
        pixels = mllm_ops.preprocess_frames(frames, cfg.mllm.vision.image_size) if with_frame else None
        last = model.lm.model(input_ids=ids, attention_mask=att, pixel_values=pixels, use_cache=False).last_hidden_state
        return model.projection(last[torch.arange(len(rows)), (ids == seg).int().argmax(1)])

    return prompt, [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("sam.")]


def train_prompted_decoder(cfg, train, val, prompter: str, used: tuple[str, ...], steps: int, batch_size: int,
                           lr: float, seed: int, encoder_state: dict | None = None):
    """A fresh tiny SAM2 decoder trained with ``oracle`` prompts of ``used`` or ``llm``/``llm+frame`` prompts.

    ``encoder_state``: a SAM2 image encoder state dict to use (frozen) instead of random weights.
    Returns ``run(frames, objects) -> low-res logits``: one object per frame, prompted the way it was trained.
    """
    from reviosa.model import sam as sam_ops
    from reviosa.model.losses import mask_losses

    torch.manual_seed(seed)
    sam = sam_ops.build_sam2(cfg.sam2)
    if encoder_state is not None:
        sam.image_encoder.load_state_dict(encoder_state)
    sam_ops.freeze_for_training(sam)
    if prompter == "oracle":
        prompt, extra = _oracle_prompter(used, [o for _, o in _objects(train) + _objects(val)], sam.hidden_dim)
    else:
        prompt, extra = _llm_prompter(cfg, with_frame=prompter == "llm+frame")
    params = [p for p in sam.parameters() if p.requires_grad] + extra
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def run(frames, objs):
        feats, _, sizes = sam_ops.frame_features(sam, sam_ops.preprocess_frames(frames, cfg.sam2.image_size))
        return sam_ops.decode(sam, sam_ops.no_memory_features(sam, feats, sizes),
                              sam_ops.high_res_maps(feats, sizes), prompt(objs, frames))["low_res"]

    rng = np.random.default_rng(seed)
    pairs = _objects(train)
    w = cfg.loss
    for _ in range(steps):
        frames, gt, objs = _draw(train, pairs, rng, batch_size, cfg.sam2.low_res)
        bce, dice = mask_losses(run(frames, objs), gt, w)
        loss = w.bce_weight * bce + w.dice_weight * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    return run


def ceiling_row(args, prompter: str, used: tuple[str, ...] = ()) -> float:
    """Held-out single-frame IoU of a decoder trained with ``prompter`` prompts (see ``train_prompted_decoder``)."""
    from reviosa.data.format import InterRVOSDataset
    from reviosa.model.config import ModelConfig

    cfg = ModelConfig.from_yaml(args.config)
    train = InterRVOSDataset.load(args.data / "train")
    val = InterRVOSDataset.load(args.data / "val")
    run = train_prompted_decoder(cfg, train, val, prompter, used, args.steps, args.batch_size, args.lr, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    pairs = _objects(val)
    scores = []
    with torch.no_grad():
        for _ in range(args.eval_batches):
            frames, gt, objs = _draw(val, pairs, rng, args.batch_size, cfg.sam2.low_res)
            scores.append(mask_iou(run(frames, objs) > 0, gt > 0.5))
    return float(torch.cat(scores).mean())


def grounding_ceiling(cfg, data: Path, used: tuple[str, ...], steps: int, batch_size: int = 8, lr: float = 1e-3,
                      seed: int = 0, max_videos: int | None = None,
                      encoder_state: dict | None = None) -> dict[str, float]:
    """Actor/Target/RVOS J&F of perfect grounding: every referent prompted with its true attributes ``used``.

    The decoder is trained as in ``train_prompted_decoder``; each expression's actor (target) track is the union
    of its referents' masks, decoded frame by frame, scored with the trainer's validation rules. What ReVIOSa's
    decoder could reach if the LLM handed it exactly those attributes.
    """
    import torch.nn.functional as F

    from reviosa.data.format import InterRVOSDataset
    from reviosa.data.video import read_frames
    from reviosa.train.validation import score_expression, summarize

    train = InterRVOSDataset.load(data / "train")
    val = InterRVOSDataset.load(data / "val")
    run = train_prompted_decoder(cfg, train, val, "oracle", used, steps, batch_size, lr, seed, encoder_state)
    rows = []
    with torch.no_grad():
        for video in list(val.videos.values())[:max_videos]:
            frames = read_frames(val, video)
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


def ceiling(args) -> None:
    """Print the prompt table."""
    rows = [("no prompt (image only)", "oracle", ()), ("colour", "oracle", ("colour",)),
            ("shape", "oracle", ("shape",)), ("size", "oracle", ("size",)),
            ("colour + shape + size", "oracle", ("colour", "shape", "size")),
            ("LLM: description", "llm", ()), ("LLM: description + frame", "llm+frame", ())]
    print(f"Tiny SAM2 decoder with oracle attribute prompts, then with the tiny LLM's prompt: {args.steps} steps x "
          f"{args.batch_size} frames, held-out IoU on {args.eval_batches * args.batch_size} frames of "
          f"{args.data / 'val'}")
    print(f"{'prompt':<28}{'IoU':>8}{'time (s)':>10}")
    for name, prompter, used in rows:
        t0 = time.perf_counter()
        iou = ceiling_row(args, prompter, used)
        print(f"{name:<28}{iou:>8.3f}{time.perf_counter() - t0:>10.0f}", flush=True)


GROUNDING_ROWS = {"none": (), "colour": ("colour",), "shape": ("shape",), "size": ("size",),
                  "all": ("colour", "shape", "size")}


def with_sam2_size(cfg, size: int):
    """``cfg`` with another SAM2 input size (0 keeps it)."""
    from reviosa.model.config import ModelConfig

    if not size:
        return cfg
    return ModelConfig.model_validate({**cfg.model_dump(), "sam2": {**cfg.sam2.model_dump(), "image_size": size}})


def grounding(args) -> None:
    """Print the perfect-grounding J&F table."""
    from reviosa.model.config import ModelConfig

    cfg = with_sam2_size(ModelConfig.from_yaml(args.config), args.sam2_image_size)
    print(f"Perfect grounding: tiny SAM2 decoder (input {cfg.sam2.image_size}) prompted with each referent's true "
          f"attributes, {args.steps} steps x {args.batch_size} frames, J&F on the held-out videos of {args.data}")
    print("| prompt | Actor J&F | Target J&F | RVOS J&F | actor-target overlap | time (s) |")
    print("|---|---|---|---|---|---|")
    for name in args.rows.split(","):
        t0 = time.perf_counter()
        s = grounding_ceiling(cfg, args.data, GROUNDING_ROWS[name], args.steps, args.batch_size, args.lr, args.seed,
                              args.videos)
        print(f"| {' + '.join(GROUNDING_ROWS[name]) or 'none'} | {s['actor_JF']:.3f} | {s['target_JF']:.3f} | "
              f"{s['rvos_JF']:.3f} | {s['role_iou']:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


def reads_language(args) -> None:
    """Print how much the decoded masks depend on the language token."""
    from reviosa.data.format import InterRVOSDataset
    from reviosa.data.video import read_frames
    from reviosa.model import mllm as mllm_ops
    from reviosa.model import sam as sam_ops
    from reviosa.model.checkpoint import from_pretrained
    from reviosa.model.inference import key_frame_indices, seg_embeddings
    from reviosa.model.tokenizer import SEG_ACT, answer_text, encode_conversation

    model = from_pretrained(args.model).eval()
    cfg = model.config
    ds = InterRVOSDataset.load(args.data / "val")
    between, to_zero = [], []
    for video in list(ds.videos.values())[:args.videos]:
        frames = read_frames(ds, video)
        keys = key_frame_indices(len(frames), cfg.inference.key_frames)
        pixels = mllm_ops.preprocess_frames(np.stack([frames[i] for i in keys]), cfg.mllm.vision.image_size)
        exps = list(video.expressions.values())
        with torch.no_grad():
            lang = []
            for exp in exps:
                prompt, _ = encode_conversation(model.tokenizer, cfg, len(keys), [exp.text], None)
                reply = model.tokenizer.encode(answer_text(cfg, exp.has_target), add_special_tokens=False)
                lang.append(seg_embeddings(model, prompt + reply, pixels)[SEG_ACT])
            lang = torch.stack(lang + [torch.zeros_like(lang[0])])
            first = sam_ops.preprocess_frames(frames[:1], cfg.sam2.image_size)
            masks = sam_ops.propagate(model.sam, 1, lambda _: first, lang, [0], frames.shape[1:3])
        masks = torch.from_numpy(masks[:, 0])
        zero = masks[-1]
        for i, a in enumerate(exps):
            to_zero.append(float(mask_iou(masks[i], zero)))
            for j in range(i + 1, len(exps)):
                if set(a.anno_ids) != set(exps[j].anno_ids):
                    between.append(float(mask_iou(masks[i], masks[j])))
    print(f"{args.model} on {min(args.videos, len(ds.videos))} held-out videos (first frame, [SEG_ACT] token)")
    print(f"mask IoU between expressions with different referents: {np.mean(between):.3f} ({len(between)} pairs)")
    print(f"mask IoU against a zero language token:                 {np.mean(to_zero):.3f} ({len(to_zero)} masks)")


def main() -> None:
    """Parse the command line and run one probe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="probe", required=True)
    c = sub.add_parser("ceiling", help="oracle attribute prompts, then the LLM's, into a fresh tiny SAM2 decoder")
    c.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ synthetic splits")
    c.add_argument("--config", default="tiny", help="model config whose sam2 section is probed")
    c.add_argument("--steps", type=int, default=1000)
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--eval-batches", type=int, default=20)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("grounding", help="J&F of held-out videos with every referent prompted by its true attributes")
    g.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ synthetic splits")
    g.add_argument("--config", default="tiny", help="model config whose sam2 section is probed")
    g.add_argument("--sam2-image-size", type=int, default=256, help="SAM2 input size (0: the config's)")
    g.add_argument("--rows", default="none,colour,shape,size,all", help=f"comma list of {list(GROUNDING_ROWS)}")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--videos", type=int, default=None, help="held-out videos scored (default: all)")
    r = sub.add_parser("reads-language", help="does a trained decoder use the language token?")
    r.add_argument("--model", required=True, help="checkpoint folder or s3:// URI")
    r.add_argument("--data", type=Path, required=True, help="folder with a val/ synthetic split")
    r.add_argument("--videos", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe == "grounding":
        unknown = set(args.rows.split(",")) - set(GROUNDING_ROWS)
        if unknown:
            p.error(f"unknown rows {sorted(unknown)}; choose from {list(GROUNDING_ROWS)}")
    {"ceiling": ceiling, "grounding": grounding, "reads-language": reads_language}[args.probe](args)


if __name__ == "__main__":
    main()
