"""Where does the tiny ReVIOSa lose the expression? Three probes of the SAM2 half on synthetic videos.

``ceiling``: how well can the tiny SAM2 (random Hiera frozen, mask decoder trained, exactly as ReVIOSa trains
it) segment an object when its language token is a *perfect* prompt, i.e. a learned embedding of the object's
true attributes instead of the LLM's [SEG] state? Rows: no prompt (a zero token: the expression-blind
reference), colour, shape, size, all three. Then the same task with the prompt made the ReVIOSa way: the tiny
LLM (LoRA) reads the object's description ("the large red circle", text only or with the frame) and the
projection of its [SEG_ACT] state is the token, LLM and decoder trained together. Held-out IoU on single frames.

``grounding``: the same oracle prompts scored like the learning benchmark (``reviosa.train.probes``): every
referent of a held-out expression is prompted with its true attributes and the InterRVOS Actor / Target / RVOS J&F
are reported: what ReVIOSa's decoder could reach if its LLM grounded every expression perfectly.

``reads-language``: does a trained checkpoint's decoder use the language token at all? For held-out videos it
decodes the first frame with the [SEG_ACT] embedding of every expression and reports the mean mask IoU between
expressions that refer to different objects, and between each expression's mask and the mask decoded with a
zero token. Values near 1 mean the decoder ignores the language and segments from the image alone.

Every probe trains through the package (``reviosa.train.probes``); this script only measures and prints.

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

from reviosa.data.format import InterRVOSDataset
from reviosa.model.config import ModelConfig
from reviosa.train.probes import ROWS, frame_iou, grounding_ceiling, train_prompted_decoder


def _model_config(args) -> ModelConfig:
    """The probed model config with the chosen SAM2 input size."""
    size = getattr(args, "sam2_image_size", 0)
    return ModelConfig.from_yaml(args.config, [f"sam2.image_size={size}"] if size else [])


def ceiling(args) -> None:
    """Print the prompt table."""
    rows = [("no prompt (image only)", "oracle", "none"), ("colour", "oracle", "colour"),
            ("shape", "oracle", "shape"), ("size", "oracle", "size"), ("colour + shape + size", "oracle", "all"),
            ("LLM: description", "llm", "none"), ("LLM: description + frame", "llm+frame", "none")]
    cfg = _model_config(args)
    train, val = InterRVOSDataset.load(args.data / "train"), InterRVOSDataset.load(args.data / "val")
    print(f"Tiny SAM2 decoder with oracle attribute prompts, then with the tiny LLM's prompt: {args.steps} steps x "
          f"{args.batch_size} frames, held-out IoU on {args.eval_batches * args.batch_size} frames of "
          f"{args.data / 'val'}")
    print(f"{'prompt':<28}{'IoU':>8}{'time (s)':>10}")
    for name, prompter, row in rows:
        t0 = time.perf_counter()
        run = train_prompted_decoder(cfg, train, prompter, ROWS[row], args.steps, args.batch_size, args.lr, args.seed)
        iou = frame_iou(run, cfg, val, args.eval_batches, args.batch_size, args.seed + 1)
        print(f"{name:<28}{iou:>8.3f}{time.perf_counter() - t0:>10.0f}", flush=True)


def grounding(args) -> None:
    """Print the perfect-grounding J&F table."""
    cfg = _model_config(args)
    train, val = InterRVOSDataset.load(args.data / "train"), InterRVOSDataset.load(args.data / "val")
    print(f"Perfect grounding: tiny SAM2 decoder (input {cfg.sam2.image_size}) prompted with each referent's true "
          f"attributes, {args.steps} steps x {args.batch_size} frames, J&F on the held-out videos of {args.data}")
    print("| prompt | Actor J&F | Target J&F | RVOS J&F | actor-target overlap | time (s) |")
    print("|---|---|---|---|---|---|")
    for name in args.rows.split(","):
        t0 = time.perf_counter()
        s = grounding_ceiling(cfg, train, val, ROWS[name], args.steps, args.batch_size, args.lr, args.seed,
                              args.videos)
        print(f"| {name} | {s['actor_JF']:.3f} | {s['target_JF']:.3f} | {s['rvos_JF']:.3f} | {s['role_iou']:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


def reads_language(args) -> None:
    """Print how much the decoded masks depend on the language token."""
    from reviosa.model import mllm as mllm_ops
    from reviosa.model import sam as sam_ops
    from reviosa.model.inference import key_frame_indices, seg_embeddings
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.tokenizer import SEG_ACT, answer_text, encode_conversation
    from reviosa.train.grounding import mask_iou

    model = ReviosaModel.from_pretrained(args.model).eval()
    cfg = model.config
    ds = InterRVOSDataset.load(args.data / "val")
    between, to_zero = [], []
    for video in list(ds.videos.values())[:args.videos]:
        frames = ds.read_frames(video)
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
    g.add_argument("--rows", default=",".join(ROWS), help=f"comma list of {list(ROWS)}")
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
        unknown = set(args.rows.split(",")) - set(ROWS)
        if unknown:
            p.error(f"unknown rows {sorted(unknown)}; choose from {list(ROWS)}")
    {"ceiling": ceiling, "grounding": grounding, "reads-language": reads_language}[args.probe](args)


if __name__ == "__main__":
    main()
