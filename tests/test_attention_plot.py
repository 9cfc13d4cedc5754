"""AML attention pictures: maps equal to the model's eager attention, the GT grid, mass in the mask, the PNG layout,
and the before/after benchmark script end to end on a tiny split."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import aml_attention  # noqa: E402

from reviosa.model.batch import build_sample, collate, sample_from_dataset  # noqa: E402
from reviosa.model.checkpoint import save_pretrained  # noqa: E402
from reviosa.model.config import ModelConfig  # noqa: E402
from reviosa.model.modeling import ReviosaModel  # noqa: E402
from reviosa.model.tokenizer import IMG_CONTEXT, PAD, SEG_ACT, SEG_TAR  # noqa: E402
from reviosa.visualize.attention import (  # noqa: E402
    ACTOR_RGB,
    COL_GAP_IN,
    DPI,
    FRAME_IN,
    TARGET_RGB,
    TokenAttention,
    draw_attention,
    evenly_spaced,
    figure_layout,
    grid_fraction,
    mass_inside,
    sample_attention,
)
from tests._splits import make_split  # noqa: E402
from tests.test_model import eager_attentions  # noqa: E402

H, W, T = 48, 64, 4


@pytest.fixture(scope="module")
def model() -> ReviosaModel:
    torch.manual_seed(0)
    m = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
    # LoRA B starts at zero: give it weights, so attention computed without the adapters would not match.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return m


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """Three expressions (interaction, plain, interaction) with different rectangles per expression and role."""
    act = np.zeros((3, T, H, W), bool)
    tar = np.zeros((3, T, H, W), bool)
    act[0, :, 4:20, 8:30] = True
    act[1, :, 30:46, 2:20] = True
    act[2, 1:3, 10:40, 40:62] = True     # absent on frames 0 and 3
    tar[0, :, 26:44, 36:60] = True
    tar[2, :, 0:12, 0:16] = True
    return act, tar


def _sample(model):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    act, tar = _masks()
    texts = ["the red circle chases the blue square", "the green star", "the square follows the circle"]
    return build_sample(model.config, model.tokenizer, frames, texts, [True, False, True], act, tar)


HEADS = [(2, 1), (2, 3), (0, 2), (3, 0)]   # the tiny config's AML heads and two more, in other layers and KV groups


def test_maps_are_the_eager_attention_rows_of_the_special_tokens(model):
    sample = _sample(model)
    maps = sample_attention(model, sample, HEADS)
    assert [m.key[:3] for m in maps[:5]] == [(2, 1, "actor"), (2, 1, "actor"), (2, 1, "actor"), (2, 1, "target"),
                                             (2, 1, "target")]
    assert len(maps) == len(HEADS) * 5 and [m.expression for m in maps[:5]] == [0, 1, 2, 0, 2]

    batch = collate([sample], model.tokenizer.convert_tokens_to_ids(PAD))
    attentions = eager_attentions(model, batch)
    ids = batch.input_ids[0]
    act_pos = (ids == model.token_ids[SEG_ACT]).nonzero()[:, 0].tolist()
    tar_pos = (ids == model.token_ids[SEG_TAR]).nonzero()[:, 0].tolist()
    assert len(act_pos) == 3 and len(tar_pos) == 2
    bounds = act_pos + [len(ids)]
    # The [SEG_TAR] of expression e lies between its [SEG_ACT] and the next one.
    tar_of = {e: next(p for p in tar_pos if bounds[e] < p < bounds[e + 1]) for e in (0, 2)}
    cols = (ids == model.token_ids[IMG_CONTEXT]).nonzero()[:, 0]
    g = model.config.mllm.grid
    assert len(cols) == T * g * g
    for m in maps:
        pos = act_pos[m.expression] if m.role == "actor" else tar_of[m.expression]
        row = attentions[m.layer][0, m.head, pos].float()
        expected = row[cols].view(T, g, g).numpy()      # frame-major, then row-major tokens
        np.testing.assert_allclose(m.attention, expected, atol=2e-6, rtol=1e-4)
        assert m.attention.sum() < 1.0 and m.attention.std() > 0.2 * m.attention.mean()  # text keys share the rest
    by_key = {m.key: m.attention for m in maps}
    # The heads see differently, so a mix-up of heads or layers would not pass the comparison above.
    assert np.abs(by_key[2, 1, "actor", 0] - by_key[2, 3, "actor", 0]).max() > 1e-3
    assert np.abs(by_key[2, 1, "actor", 0] - by_key[0, 2, "actor", 0]).max() > 1e-3


def test_gt_grid_is_the_nearest_token_cell_of_the_model_masks(model):
    sample = _sample(model)
    maps = sample_attention(model, sample)           # the config's heads
    assert {m.key[:2] for m in maps} == {tuple(h) for h in model.config.loss.aml_heads}
    low = sample.actor_masks.shape[-1]
    g = model.config.mllm.grid
    step = low // g
    for m in maps:
        src = (sample.actor_masks if m.role == "actor" else sample.target_masks)[m.expression].numpy()
        # nearest from a low x low mask to g x g reads pixel (step*i, step*j)
        np.testing.assert_array_equal(m.gt, src[:, ::step, ::step])
        np.testing.assert_array_equal(m.mask, src > 0)
    gts = {(m.role, m.expression): m.gt for m in maps}
    assert gts["actor", 2][[0, 3]].sum() == 0 and gts["actor", 2][1].sum() > 0
    assert not np.array_equal(gts["actor", 0], gts["target", 0])


def test_mass_inside_and_chance_on_a_hand_case():
    att = np.array([[[0.1, 0.2], [0.0, 0.1]], [[0.3, 0.0], [0.0, 0.1]]])   # total 0.8
    gt = np.zeros((2, 2, 2))
    gt[0, 0, 1] = gt[1, 0, 0] = gt[1, 1, 0] = 1
    assert mass_inside(att, gt) == pytest.approx((0.2 + 0.3 + 0.0) / 0.8)
    assert grid_fraction(gt) == pytest.approx(3 / 8)
    assert mass_inside(np.full((2, 2, 2), 0.05), gt) == pytest.approx(grid_fraction(gt))  # even attention = chance
    assert np.isnan(mass_inside(np.zeros((2, 2, 2)), gt))
    with pytest.raises(ValueError, match="shape"):
        mass_inside(att, gt[0])
    assert evenly_spaced(8, 4) == [0, 2, 5, 7] and evenly_spaced(2, 4) == [0, 0, 1, 1]


def _hand_map(role: str, hot: tuple[int, int, int], gt_cell: tuple[int, int, int], t: int = 2, g: int = 4):
    att = np.zeros((t, g, g), np.float32)
    att[hot] = 0.5
    gt = np.zeros((t, g, g), np.float32)
    gt[gt_cell] = 1
    return TokenAttention(2, 1, role, 0, att, gt, np.zeros((t, 16, 16), bool))


def _pixel(img: np.ndarray, box, cell: tuple[int, int, int], g: int = 4) -> np.ndarray:
    t, i, j = cell
    x0, y0, _, _ = box
    side = FRAME_IN * DPI
    return img[int(y0 + (i + 0.5) / g * side), int(x0 + (t + (j + 0.5) / g) * side)].astype(int)


def test_png_layout_puts_each_run_and_cell_where_the_layout_says(tmp_path):
    frames = np.full((2, 20, 30, 3), 128, np.uint8)
    gt_cell = (0, 1, 2)
    before = [_hand_map("actor", (1, 2, 3), gt_cell), _hand_map("target", (0, 3, 0), gt_cell)]
    after = [_hand_map("actor", (0, 0, 1), gt_cell), _hand_map("target", (1, 0, 3), gt_cell)]
    layout = draw_attention(tmp_path / "two.png", frames, [("before", before), ("after", after)], title="t")
    img = np.asarray(Image.open(tmp_path / "two.png").convert("RGB"))
    assert (img.shape[1], img.shape[0]) == layout.size
    assert layout.columns == ["frames", "gt", "before", "after"] and len(layout.rows) == 2

    hot = np.round(np.asarray(colormaps["magma"](1.0)[:3]) * 255)
    cold = np.round(np.asarray(colormaps["magma"](0.0)[:3]) * 255)
    for r, (b, a) in enumerate(zip(before, after)):
        hot_b = tuple(int(x) for x in np.argwhere(b.attention)[0])
        hot_a = tuple(int(x) for x in np.argwhere(a.attention)[0])
        assert np.abs(_pixel(img, layout.panels[r, "before"], hot_b) - hot).max() <= 3
        assert np.abs(_pixel(img, layout.panels[r, "before"], hot_a) - cold).max() <= 3
        assert np.abs(_pixel(img, layout.panels[r, "after"], hot_a) - hot).max() <= 3
        assert np.abs(_pixel(img, layout.panels[r, "after"], hot_b) - cold).max() <= 3
        colour = ACTOR_RGB if b.role == "actor" else TARGET_RGB
        assert np.abs(_pixel(img, layout.panels[r, "gt"], gt_cell) - colour).max() <= 3
        assert np.abs(_pixel(img, layout.panels[r, "gt"], (1, 1, 2)) - colour).max() > 60

    one = draw_attention(tmp_path / "one.png", frames, [("only", before[:1])])
    w1, h1 = Image.open(tmp_path / "one.png").size
    assert (w1, h1) == one.size == figure_layout(1, 1, 2).size
    assert w1 == layout.size[0] - round((2 * FRAME_IN + COL_GAP_IN) * DPI)   # one heatmap column fewer
    assert h1 < layout.size[1]

    with pytest.raises(ValueError, match="lacks the maps"):
        draw_attention(tmp_path / "x.png", frames, [("before", before), ("after", after[:1])])
    moved = [_hand_map("actor", (0, 0, 1), (1, 1, 1)), after[1]]
    with pytest.raises(ValueError, match="another GT grid"):
        draw_attention(tmp_path / "x.png", frames, [("before", before), ("after", moved)])


def test_benchmark_script_measures_both_checkpoints_and_writes_table_and_plots(model, tmp_path, capsys):
    ds = make_split(tmp_path / "split")
    save_pretrained(model, tmp_path / "a")
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if "lora_B" in name:
                p.mul_(-1.5)
    save_pretrained(other, tmp_path / "b")
    out = tmp_path / "out"
    doc = aml_attention.main(["--checkpoint", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "b"),
                              "--data", str(tmp_path / "split"), "--n", "5", "--out", str(out), "--plots", "1",
                              "--no-progress"])
    printed = capsys.readouterr().out
    on_disk = json.loads((out / "attention_table.json").read_text())
    assert on_disk == json.loads(json.dumps(doc))
    # vid_a's interactions with a target, in file order ("4" has no roles, vid_b none)
    assert [(e["video"], e["exp_id"]) for e in doc["expressions"]] == [("vid_a", "2"), ("vid_a", "3")]
    assert all(e["frame_indices"] == [0, 1, 2, 3] for e in doc["expressions"])
    before, after = (c["label"] for c in doc["checkpoints"])
    assert before.startswith("before") and after.startswith("after")
    assert [(r["layer"], r["head"], r["role"]) for r in doc["rows"]] == [(2, 1, "actor"), (2, 1, "target"),
                                                                        (2, 3, "actor"), (2, 3, "target")]

    # chance from the split's own masks: 24x32 frames -> 64x64 model masks (nearest) -> 8x8 grid (nearest) reads
    # source pixel (3i, 4j)
    video = ds.videos["vid_a"]
    frac = {}
    for exp_id in ("2", "3"):
        exp = video.expressions[exp_id]
        for role, ids in (("actor", exp.anno_ids), ("target", exp.target_anno_ids)):
            m = ds.union_masks(video, ids)[:, 0:24:3, 0:32:4]
            frac[role, exp_id] = m.mean()
    assert frac["actor", "2"] == pytest.approx(16 / 256) and frac["target", "2"] == pytest.approx(24 / 256)

    # each column is its own checkpoint's attention on the same samples
    expected = {}
    for label, m in ((before, model), (after, other)):
        for exp_id in ("2", "3"):
            s = sample_from_dataset(m.config, m.tokenizer, ds, video, [exp_id], [0, 1, 2, 3])
            maps = {x.key[:3]: x for x in sample_attention(m, s)}
            for (layer, head, role), x in maps.items():
                o = maps[layer, head, "target" if role == "actor" else "actor"]
                expected[label, (layer, head, role), exp_id] = (mass_inside(x.attention, x.gt),
                                                                mass_inside(x.attention, o.gt))
    for r in doc["rows"]:
        key = (r["layer"], r["head"], r["role"])
        per = r["per_expression"]
        assert per["chance"] == pytest.approx([frac[r["role"], "2"], frac[r["role"], "3"]])
        assert r["chance"] == pytest.approx(np.mean(per["chance"]))
        for label in (before, after):
            for i, field in enumerate(("mass_inside", "mass_inside_other_role")):
                assert per[field][label] == pytest.approx([expected[label, key, e][i] for e in ("2", "3")], abs=1e-6)
                assert r[field][label] == pytest.approx(np.mean(per[field][label]))
            assert 0 < r["vision_share"][label] < 1
        assert r["mass_inside"][before] != pytest.approx(r["mass_inside"][after], abs=1e-4)

    assert doc["plots"] == ["plots/vid_a_2.png"]
    assert Image.open(out / "plots" / "vid_a_2.png").size == figure_layout(4, 2, 4).size
    md = (out / "attention_table.md").read_text()
    assert printed.strip() == md.strip()
    table = [line for line in md.splitlines() if line.startswith("| (")]
    assert len(table) == 4 and table[0].startswith("| (2, 1) | actor | 0.078 |")
