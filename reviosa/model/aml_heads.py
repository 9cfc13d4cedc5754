"""AML layer/head selection: how much each layer and head of the MLLM attends from ``[SEG_ACT]`` to vision."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reviosa.model.batch import ReviosaBatch
from reviosa.model.tokenizer import SEG_ACT


@dataclass
class HeadSelection:
    """Attention mass to vision tokens per (layer, head), and the chosen layer and heads."""

    table: np.ndarray          # (layers, heads)
    layer: int
    heads: list[int]

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The ``loss.aml_heads`` entries to put in a model config."""
        return [(self.layer, h) for h in self.heads]


@torch.no_grad()
def vision_attention(model, batch: ReviosaBatch) -> np.ndarray:
    """(layers, heads) attention mass from ``[SEG_ACT]`` rows to all vision tokens, averaged over the rows."""
    out = model.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                         attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                         output_hidden_states=True, use_cache=False)
    rows = (batch.input_ids == model.token_ids[SEG_ACT]).nonzero()
    if len(rows) == 0:
        raise ValueError(f"the batch has no {SEG_ACT} token")
    text = model.lm.config.text_config
    heads = list(range(text.num_attention_heads))
    table = np.zeros((text.num_hidden_layers, len(heads)))
    for layer in range(text.num_hidden_layers):
        att = model.special_attention(out.hidden_states, batch, rows[:, 0], rows[:, 1], layer, heads)
        table[layer] = att.sum(-1).mean(0).float().cpu().numpy()
    return table


def select_heads(model, batches: Iterable[ReviosaBatch], top_k: int = 4, progress: bool = True) -> HeadSelection:
    """Average the attention table over batches, pick the layer with the highest head mean, then its top-k heads."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    try:
        tables = [vision_attention(model, b) for b in tqdm(batches, desc="attention", disable=not progress)]
    finally:
        model.train(was_training)
    if not tables:
        raise ValueError("no batches to measure attention on")
    table = np.mean(tables, axis=0)
    layer = int(table.mean(1).argmax())
    heads = [int(h) for h in np.argsort(-table[layer])[:top_k]]
    return HeadSelection(table=table, layer=layer, heads=heads)


def format_table(sel: HeadSelection) -> str:
    """A plain-text table: per layer the head-averaged mass and the per-head values (chosen ones starred)."""
    n_heads = sel.table.shape[1]
    lines = ["layer  mean   " + " ".join(f"h{h:02d}  " for h in range(n_heads))]
    for layer, row in enumerate(sel.table):
        cells = " ".join(f"{v:.3f}{'*' if layer == sel.layer and h in sel.heads else ' '}" for h, v in enumerate(row))
        lines.append(f"{layer:5d}  {row.mean():.3f}  {cells}")
    lines.append(f"selected layer {sel.layer}, heads {sel.heads}  ->  aml_heads: "
                 f"{[list(p) for p in sel.pairs]}")
    return "\n".join(lines)


def save_plots(sel: HeadSelection, out_dir: str | os.PathLike) -> list[Path]:
    """Two PNGs (paper Fig. 6 analogue): per-layer head-averaged mass, and per-head mass of the chosen layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reviosa.data.atomic import atomic_write_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    layer_mean = sel.table.mean(1)
    for name, values, chosen, xlabel, title in (
            ("layer_attention.png", layer_mean, [sel.layer], "layer",
             "[SEG_ACT] → vision attention, head average"),
            ("head_attention.png", sel.table[sel.layer], sel.heads, "head",
             f"[SEG_ACT] → vision attention, layer {sel.layer}")):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(values) + 1.5), 3.2))
        colours = ["tab:red" if i in chosen else "tab:gray" for i in range(len(values))]
        ax.bar(range(len(values)), values, color=colours)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("attention mass on vision tokens")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(values)))
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(out_dir / name, buf.getvalue())
        paths.append(out_dir / name)
    return paths
