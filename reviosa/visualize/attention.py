"""Where the AML heads look: the attention of ``[SEG_ACT]``/``[SEG_TAR]`` over the vision tokens, laid out on the
per-frame token grid next to the ground-truth mask on that grid (the attention-mask loss's target), for one
checkpoint or several (before / after fine-tuning) side by side.

The attention is the model's own (:meth:`ReviosaModel.special_attention`, the rows the AML trains) and the grid mask
is the AML's (:func:`reviosa.model.losses.patch_masks` with the model's ``aml_patch_rule``), so a picture shows
exactly what the loss compared.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reviosa.model.batch import ReviosaSample, collate
from reviosa.model.losses import patch_masks
from reviosa.model.tokenizer import PAD
from reviosa.visualize.overlay import ACTOR_RGB, TARGET_RGB

ROLES = ("actor", "target")

# Figure geometry in inches (at DPI pixels per inch): fixed, so a panel's pixel box is known without rendering.
DPI = 100
FRAME_IN = 1.2      # side of one frame inside a panel
LABEL_IN = 1.1      # left band with the row labels
HEADER_IN = 0.75    # top band with the title and column headers
CAPTION_IN = 0.3    # space above each panel for its caption
COL_GAP_IN = 0.2
MARGIN_IN = 0.15
_GRID_LINE = (0.0, 1.0, 1.0)   # GT cell outline on heatmaps: cyan stays visible on every part of magma


@dataclass
class TokenAttention:
    """One head's attention from one special token over the vision tokens, with the GT mask on the same grid."""

    layer: int
    head: int
    role: str                 # "actor" ([SEG_ACT]) or "target" ([SEG_TAR])
    expression: int           # index of the expression (chat round) in the sample
    attention: np.ndarray     # (T, g, g) softmax probabilities at the vision tokens; the text tokens hold the rest
    gt: np.ndarray            # (T, g, g) {0, 1}: the AML target of this token
    mask: np.ndarray          # (T, h, w) bool GT at the model's mask resolution (for the frame outline)

    @property
    def key(self) -> tuple[int, int, str, int]:
        """(layer, head, role, expression): what a row of a figure or table is."""
        return self.layer, self.head, self.role, self.expression


def evenly_spaced(n_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread over a video from its first to its last frame (repeats when it is shorter)."""
    if n_frames < 1 or k < 1:
        raise ValueError(f"need at least one frame to pick and one to pick from (n_frames={n_frames}, k={k})")
    return np.linspace(0, n_frames - 1, k).round().astype(int).tolist()


@torch.no_grad()
def sample_attention(model, sample: ReviosaSample, heads: Sequence[Sequence[int]] | None = None
                     ) -> list[TokenAttention]:
    """Attention maps of every AML head (or ``heads``) from each ``[SEG_ACT]``/``[SEG_TAR]`` of one sample."""
    if sample.actor_masks is None:
        raise ValueError("the sample has no GT masks: build it with actor and target masks")
    pairs = [(int(layer), int(head)) for layer, head in (model.config.loss.aml_heads if heads is None else heads)]
    if not pairs:
        raise ValueError("no (layer, head) pairs: the model's loss.aml_heads is empty and no heads were given")
    text = model.lm.config.text_config
    for layer, head in pairs:
        if not (0 <= layer < text.num_hidden_layers and 0 <= head < text.num_attention_heads):
            raise ValueError(f"head ({layer}, {head}) is outside the model's {text.num_hidden_layers} layers x "
                             f"{text.num_attention_heads} heads")
    device = next(model.parameters()).device
    batch = collate([sample], model.tokenizer.convert_tokens_to_ids(PAD)).to(device)
    was_training = model.training
    model.eval()
    try:
        out = model.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                             attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                             output_hidden_states=True, use_cache=False)
        # The loss's own pairing of [SEG_TAR] tokens with expressions, so a map is shown against the GT it trains on.
        tokens = model.seg_tokens(batch)
        n_act = tokens.act_b.numel()
        row_role = ["actor"] * n_act + ["target"] * tokens.tar_b.numel()
        row_exp = list(range(n_act)) + tokens.tar_e.tolist()

        t = batch.num_frames
        grid = model.config.mllm.grid
        rule = model.config.loss.aml_patch_rule
        gts = {role: patch_masks(m[0], grid, rule).view(m.size(1), t, grid, grid).cpu().numpy()
               for role, m in (("actor", batch.actor_masks), ("target", batch.target_masks))}
        pixel = {role: m[0].bool().cpu().numpy() for role, m in (("actor", batch.actor_masks),
                                                                 ("target", batch.target_masks))}

        maps = {key: att.float().view(att.size(0), t, grid, grid).cpu().numpy()
                for key, att in model.seg_attention(out.hidden_states, batch, tokens, pairs).items()}
    finally:
        model.train(was_training)
    result = []
    for layer, head in pairs:
        for r, (role, e) in enumerate(zip(row_role, row_exp)):
            result.append(TokenAttention(layer, head, role, e, maps[layer, head][r], gts[role][e], pixel[role][e]))
    return result


def mass_inside(attention: np.ndarray, gt: np.ndarray) -> float:
    """Share of the attention on vision tokens that falls on GT grid cells (NaN when there is no attention)."""
    attention, gt = np.asarray(attention, np.float64), np.asarray(gt)
    if attention.shape != gt.shape:
        raise ValueError(f"attention {attention.shape} and GT {gt.shape} differ in shape")
    total = attention.sum()
    return float((attention * (gt > 0)).sum() / total) if total > 0 else float("nan")


def grid_fraction(gt: np.ndarray) -> float:
    """Share of grid cells inside the GT mask: ``mass_inside`` of attention spread evenly over the vision tokens."""
    return float((np.asarray(gt) > 0).mean())


@dataclass
class FigureLayout:
    """Pixel size of a written figure and each panel's pixel box ``(x0, y0, x1, y1)``, top-left origin."""

    size: tuple[int, int]
    columns: list[str]
    rows: list[tuple[int, int, str, int]]
    panels: dict[tuple[int, str], tuple[int, int, int, int]]


def figure_layout(n_rows: int, n_runs: int, n_frames: int, columns: Sequence[str] | None = None,
                  rows: Sequence[tuple] = ()) -> FigureLayout:
    """Where :func:`draw_attention` puts each panel for ``n_rows`` rows, ``n_runs`` checkpoints and ``n_frames``."""
    columns = list(columns) if columns is not None else ["frames", "gt"] + [f"run{i}" for i in range(n_runs)]
    panel_w, panel_h = n_frames * FRAME_IN, FRAME_IN
    width = LABEL_IN + len(columns) * panel_w + (len(columns) - 1) * COL_GAP_IN + MARGIN_IN
    height = HEADER_IN + n_rows * (CAPTION_IN + panel_h) + MARGIN_IN
    panels = {}
    for r in range(n_rows):
        for c, name in enumerate(columns):
            x0 = LABEL_IN + c * (panel_w + COL_GAP_IN)
            y0 = HEADER_IN + r * (CAPTION_IN + panel_h) + CAPTION_IN
            panels[r, name] = tuple(int(round(v * DPI)) for v in (x0, y0, x0 + panel_w, y0 + panel_h))
    return FigureLayout((int(round(width * DPI)), int(round(height * DPI))), columns, list(rows), panels)


def draw_attention(path: str | os.PathLike, frames: np.ndarray, runs: Sequence[tuple[str, Sequence[TokenAttention]]],
                   title: str = "") -> FigureLayout:
    """Write a PNG: one row per (head, token); columns frame + GT outline, GT grid, then each run's heatmap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    from reviosa.data.atomic import atomic_write_bytes

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if not runs:
        raise ValueError("give at least one run (name, maps)")
    first = runs[0][1]
    keys = [m.key for m in first]
    if not keys:
        raise ValueError(f"run {runs[0][0]!r} has no attention maps")
    by_run = []
    for name, maps in runs:
        lookup = {m.key: m for m in maps}
        missing = [k for k in keys if k not in lookup]
        if missing:
            raise ValueError(f"run {name!r} lacks the maps {missing} of run {runs[0][0]!r}")
        by_run.append(lookup)
    n_frames = first[0].attention.shape[0]
    if len(frames) != n_frames:
        raise ValueError(f"{len(frames)} frames for maps over {n_frames} frames")
    names = [name for name, _ in runs]
    columns = ["frames", "gt", *names]
    layout = figure_layout(len(keys), len(runs), n_frames, columns, keys)
    w_px, h_px = layout.size
    fig = Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = first[0].attention.shape[-1]
    # Each frame is squashed to a square, as the MLLM's tile is, so that grid cell (i, j) sits over the pixels its
    # vision token saw.
    side = grid * 8
    squares = np.stack([np.asarray(Image.fromarray(f.astype(np.uint8)).resize((side, side), Image.BILINEAR))
                        for f in frames])

    def axes(r: int, col: str):
        x0, y0, x1, y1 = layout.panels[r, col]
        ax = fig.add_axes((x0 / w_px, 1 - y1 / h_px, (x1 - x0) / w_px, (y1 - y0) / h_px))
        ax.set_axis_off()
        return ax

    def strip(a: np.ndarray) -> np.ndarray:
        return np.concatenate(list(a), axis=1)     # (T, h, w, ...) -> (h, T*w, ...)

    def separators(ax) -> None:
        for t in range(1, n_frames):
            ax.axvline(t, color="white", linewidth=1.5)

    def caption(r: int, col: str, text: str) -> None:
        x0, y0, _, _ = layout.panels[r, col]
        fig.text(x0 / w_px, 1 - (y0 - 4) / h_px, text, fontsize=7, ha="left", va="bottom")

    extent = (0, n_frames, 1, 0)
    if title:
        fig.text(0.5, 1 - 0.08 / (h_px / DPI), title, fontsize=9, ha="center", va="top")
    headers = {"frames": "frame + GT mask", "gt": "GT on the token grid"}
    for col in columns:
        x0, _, x1, _ = layout.panels[0, col]
        fig.text((x0 + x1) / 2 / w_px, 1 - (HEADER_IN * DPI - 22) / h_px, headers.get(col, col), fontsize=8,
                 ha="center", va="bottom", weight="bold")

    for r, key in enumerate(keys):
        layer, head, role, exp = key
        ref = by_run[0][key]
        for lookup, name in zip(by_run[1:], names[1:]):
            if not np.array_equal(lookup[key].gt, ref.gt):
                raise ValueError(f"run {name!r} has another GT grid for {key} than run {names[0]!r} (a different "
                                 "grid or patch rule): their maps cannot share one row")
        colour = np.asarray(ACTOR_RGB if role == "actor" else TARGET_RGB, np.float64) / 255
        y_mid = (layout.panels[r, "frames"][1] + layout.panels[r, "frames"][3]) / 2
        label = f"layer {layer}\nhead {head}\n{role}" + (f"\nexpr {exp}" if len({k[3] for k in keys}) > 1 else "")
        fig.text(0.08 / (w_px / DPI), 1 - y_mid / h_px, label, fontsize=8, ha="left", va="center", color=colour * 0.8)

        ax = axes(r, "frames")
        ax.imshow(strip(squares), extent=extent, aspect="auto", interpolation="nearest")
        mask = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((side, side), Image.NEAREST))
                         for m in ref.mask]) > 0
        if mask.any():
            ax.contour(np.linspace(0, n_frames, n_frames * side, endpoint=False) + 0.5 / side,
                       np.linspace(0, 1, side, endpoint=False) + 0.5 / side, strip(mask).astype(float), levels=[0.5],
                       colors=[colour], linewidths=1.5)
        separators(ax)
        ax.set_xlim(0, n_frames)
        ax.set_ylim(1, 0)
        caption(r, "frames", "no GT on these frames" if not ref.mask.any() else "")

        gt_rgb = np.where(strip(ref.gt)[..., None] > 0, colour, 0.12)
        ax = axes(r, "gt")
        ax.imshow(gt_rgb, extent=extent, aspect="auto", interpolation="nearest")
        separators(ax)
        caption(r, "gt", f"cells in GT {grid_fraction(ref.gt):.3f} (chance)")

        # One colour scale per row, shared by the runs, so "brighter after" means more attention, not a rescale.
        vmax = max(float(lookup[key].attention.max()) for lookup in by_run) or 1.0
        cells = np.kron(strip(ref.gt), np.ones((8, 8)))
        for lookup, name in zip(by_run, names):
            m = lookup[key]
            ax = axes(r, name)
            ax.imshow(strip(m.attention), extent=extent, aspect="auto", interpolation="nearest", cmap="magma",
                      vmin=0.0, vmax=vmax)
            if cells.any():
                n = cells.shape[0]
                ax.contour(np.linspace(0, n_frames, cells.shape[1], endpoint=False) + 0.5 / n,
                           np.linspace(0, 1, n, endpoint=False) + 0.5 / n, cells, levels=[0.5],
                           colors=[_GRID_LINE], linewidths=0.8)
            separators(ax)
            ax.set_xlim(0, n_frames)
            ax.set_ylim(1, 0)
            caption(r, name, f"in GT {mass_inside(m.attention, m.gt):.3f}   on vision {m.attention.sum():.3f}   "
                             f"max {vmax:.3g}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(Path(path), buf.getvalue())
    return layout
