"""Do the AML heads look at the referent? Attention of [SEG_ACT]/[SEG_TAR] inside the GT mask, per checkpoint.

For the first ``--n`` interaction expressions (those with a target) of a split, in file order, each checkpoint reads
the clip (``--frames`` evenly spaced frames, default the model config's ``train_frames``) with the teacher-forced
answer, built as training builds a sample (first question and answer form, no augmentation). At every AML
(layer, head) -- those of the last checkpoint, the fine-tuned one, unless ``--heads`` names others -- the attention
of each special token over the vision tokens is compared with the GT mask on the token grid, the target of the
attention-mask loss (``reviosa.visualize.attention``).

The table gives, per head and token, the mean over expressions of the attention mass inside the GT mask (attention
on GT cells / attention on all vision tokens) for each checkpoint, the chance level (the mean share of grid cells
inside the GT mask: what attention spread evenly over the frames would score), the mass inside the *other* role's
GT mask (actor token on the target's mask and vice versa: a head that lights up both objects whatever the token
scores the same on both), and the mean share of the token's attention that goes to vision tokens at all. It is
printed and written (``attention_table.json`` / ``.md``) to ``--out`` together with ``--plots`` figures
(``plots/<video>_<exp>.png``).

    python benchmarks/aml_attention.py --checkpoint reviosa-tiny-base --checkpoint runs/learn/variant-iv/final \\
        --data runs/learn/data/val --out runs/aml-plots
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from reviosa.data.atomic import atomic_write_text
from reviosa.data.format import InterRVOSDataset
from reviosa.data.names import inside
from reviosa.model.batch import sample_from_dataset
from reviosa.visualize.attention import draw_attention, evenly_spaced, grid_fraction, mass_inside, sample_attention


def interaction_expressions(dataset: InterRVOSDataset, n: int) -> list[tuple[str, str]]:
    """(video, expression id) of the first ``n`` expressions with a target, in file order."""
    picked = [(v.name, e.exp_id) for v, e in dataset.iter_expressions() if e.has_target]
    return picked[:n]


def labels_for(checkpoints: list[str]) -> list[str]:
    """Column names: ``before``/``after`` for two checkpoints, ``ckpt<i>`` otherwise, with a short source name."""
    tags = ["before", "after"] if len(checkpoints) == 2 else [f"ckpt{i}" for i in range(len(checkpoints))]
    out = []
    for tag, c in zip(tags, checkpoints):
        parts = Path(str(c).rstrip("/")).parts
        out.append(f"{tag}: {'/'.join(parts[-2:])}")
    return out


def parse_heads(text: str) -> list[tuple[int, int]]:
    """``"2,1 2,3"`` -> [(2, 1), (2, 3)]."""
    try:
        pairs = [tuple(int(x) for x in item.split(",")) for item in text.split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"heads must look like '2,1 2,3', got {text!r}") from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"heads must look like '2,1 2,3', got {text!r}")
    return pairs


def measure(checkpoints: list[str], dataset: InterRVOSDataset, chosen: list[tuple[str, str]],
            heads: list[tuple[int, int]] | None, n_frames: int | None, progress: bool = True):
    """Per checkpoint, the attention maps of every chosen expression; plus the heads and frames used."""
    from tqdm import tqdm

    from reviosa.model.modeling import ReviosaModel

    # The last checkpoint first: its AML heads and frame count are the ones every checkpoint is measured at.
    order = list(range(len(checkpoints)))[::-1]
    maps: list[list] = [[] for _ in checkpoints]
    frames_of: dict[tuple[str, str], list[int]] = {}
    with tqdm(total=len(checkpoints) * len(chosen), desc="attention", unit="expr", disable=not progress) as bar:
        for i in order:
            model = ReviosaModel.from_pretrained(checkpoints[i])
            if heads is None:
                heads = [tuple(p) for p in model.config.loss.aml_heads]
                if not heads:
                    raise SystemExit(f"{checkpoints[i]} has no AML heads (loss.aml_heads is empty): name them "
                                     "with --heads")
            if n_frames is None:
                n_frames = model.config.train_frames
            for vid, exp_id in chosen:
                video = dataset.videos[vid]
                idx = frames_of.setdefault((vid, exp_id), evenly_spaced(video.num_frames, n_frames))
                sample = sample_from_dataset(model.config, model.tokenizer, dataset, video, [exp_id], idx)
                maps[i].append(sample_attention(model, sample, heads))
                bar.update(1)
            del model
    return maps, heads, n_frames, frames_of


def table(labels: list[str], maps: list[list], chosen: list[tuple[str, str]]) -> list[dict]:
    """Per (layer, head, role): chance; per checkpoint mean mass in its GT, in the other role's GT, on vision."""
    keys = [m.key[:3] for m in maps[0][0]]
    rows = []
    for key in keys:
        row = {"layer": key[0], "head": key[1], "role": key[2], "n": len(chosen)}
        chance = []
        mass: dict[str, list[float]] = {lab: [] for lab in labels}
        other: dict[str, list[float]] = {lab: [] for lab in labels}
        vision: dict[str, list[float]] = {lab: [] for lab in labels}
        other_key = (key[0], key[1], "target" if key[2] == "actor" else "actor")
        for s in range(len(chosen)):
            for lab, per_ckpt in zip(labels, maps):
                m = next(x for x in per_ckpt[s] if x.key[:3] == key)
                o = next(x for x in per_ckpt[s] if x.key[:3] == other_key)
                mass[lab].append(mass_inside(m.attention, m.gt))
                # A head that lights up both objects whatever the token scores well above chance on its own mask
                # too: the other role's mask tells looking at "the pair" apart from looking at this token's role.
                other[lab].append(mass_inside(m.attention, o.gt))
                vision[lab].append(float(m.attention.sum()))
                if lab == labels[0]:
                    chance.append(grid_fraction(m.gt))
        row["chance"] = float(np.mean(chance))
        row["mass_inside"] = {lab: float(np.nanmean(v)) for lab, v in mass.items()}
        row["mass_inside_other_role"] = {lab: float(np.nanmean(v)) for lab, v in other.items()}
        row["vision_share"] = {lab: float(np.mean(v)) for lab, v in vision.items()}
        row["per_expression"] = {"chance": chance, "mass_inside": mass, "mass_inside_other_role": other}
        rows.append(row)
    return rows


def markdown(rows: list[dict], labels: list[str], header: str) -> str:
    """The table as markdown, one row per (layer, head, role), the columns of :func:`table`."""
    cols = ["head (layer, head)", "token", "chance"] + [f"{lab} in GT" for lab in labels] + \
        [f"{lab} in other role's GT" for lab in labels] + [f"{lab} on vision" for lab in labels]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"({r['layer']}, {r['head']})", r["role"], f"{r['chance']:.3f}"]
        cells += [f"{r['mass_inside'][lab]:.3f}" for lab in labels]
        cells += [f"{r['mass_inside_other_role'][lab]:.3f}" for lab in labels]
        cells += [f"{r['vision_share'][lab]:.3f}" for lab in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Measure, draw, print and write the table; returns the written JSON document."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a save_pretrained folder, s3:// URI or shipped name; repeat it: before, then after")
    p.add_argument("--data", type=Path, required=True, help="an InterRVOS split folder")
    p.add_argument("--n", type=int, default=20, help="interaction expressions to measure (first ones of the split)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plots", type=int, default=4, help="figures to draw (of the first expressions)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the last checkpoint's "
                   "train_frames)")
    p.add_argument("--heads", type=parse_heads, default=None,
                   help="'layer,head layer,head ...' (default: the last checkpoint's loss.aml_heads)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be at least 1")

    dataset = InterRVOSDataset.load(args.data)
    chosen = interaction_expressions(dataset, args.n)
    if not chosen:
        raise SystemExit(f"{args.data}: the split has no interaction expression with a target")
    if len(chosen) < args.n:
        print(f"only {len(chosen)} interaction expressions with a target in {args.data}", file=sys.stderr)
    labels = labels_for(args.checkpoint)
    maps, heads, n_frames, frames_of = measure(args.checkpoint, dataset, chosen, args.heads, args.frames,
                                               progress=not args.no_progress)
    rows = table(labels, maps, chosen)

    written = []
    for s, (vid, exp_id) in enumerate(chosen[:max(0, args.plots)]):
        video = dataset.videos[vid]
        idx = frames_of[vid, exp_id]
        path = inside(args.out / "plots", f"{vid}_{exp_id}.png", what="plot name")
        title = f"{vid} #{exp_id}: \"{video.expressions[exp_id].text}\"   frames {idx}"
        draw_attention(path, dataset.read_frames(video, idx), [(lab, maps[i][s]) for i, lab in enumerate(labels)],
                       title=title)
        written.append(str(path.relative_to(args.out.resolve())))

    header = (f"Attention mass inside the GT mask (share of the token's vision attention on GT grid cells), mean over "
              f"the first {len(chosen)} interaction expressions of {args.data.name}, {n_frames} evenly spaced "
              f"frames, teacher-forced answers; chance = mean share of grid cells inside the GT mask")
    doc = {"checkpoints": [{"label": lab, "source": str(c)} for lab, c in zip(labels, args.checkpoint)],
           "split": args.data.name, "n": len(chosen), "frames": n_frames, "heads": [list(h) for h in heads],
           "expressions": [{"video": v, "exp_id": e, "text": dataset.videos[v].expressions[e].text,
                            "frame_indices": frames_of[v, e]} for v, e in chosen],
           "rows": rows, "plots": written}
    md = markdown(rows, labels, header)
    atomic_write_text(args.out / "attention_table.json", json.dumps(doc, indent=1) + "\n")
    atomic_write_text(args.out / "attention_table.md", md)
    print(md, end="")
    return doc


if __name__ == "__main__":
    main()
