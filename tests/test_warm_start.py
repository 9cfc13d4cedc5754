"""The learning benchmark's warm start: trains the parameters ReVIOSa trains, records itself, resumes honestly."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import warm_start as ws_mod  # noqa: E402

from reviosa.data.format import InterRVOSDataset  # noqa: E402
from reviosa.model.checkpoint import TRAINABLE_FILE, build_model, from_pretrained  # noqa: E402
from reviosa.model.config import ModelConfig  # noqa: E402


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from reviosa.data.synthetic import generate_splits, load_config

    root = tmp_path_factory.mktemp("warm") / "data"
    generate_splits(root, load_config(frames=6, height=48, width=48), {"train": 3, "val": 2}, seed=0, workers=1)
    return root


def test_warm_start_trains_only_reviosas_parameters_and_records_itself(synthetic, tmp_path):
    cfg = ModelConfig.from_yaml("tiny")
    ws = ws_mod.WarmStartConfig(encoder_steps=0, decoder_steps=2, llm_steps=2, joint_steps=2, batch_size=2)
    out = ws_mod.warm_start(cfg, synthetic, tmp_path / "ws", ws, progress=False)

    torch.manual_seed(ws.seed)
    fresh = build_model(cfg)
    model = from_pretrained(out)
    before, after = dict(fresh.named_parameters()), dict(model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p, before[n])}
    # the same parameters the trainer trains moved; the frozen image encoders did not
    assert any(n.startswith("sam.sam_mask_decoder.") for n in changed)
    assert any("lora_" in n for n in changed)
    assert not any(n.startswith("sam.image_encoder.") for n in changed)
    assert all(after[n].requires_grad for n in changed)  # nothing frozen (vision encoders, LLM base) moved

    rec = ws_mod.record(out)
    assert rec["config"] == asdict(ws) and rec["wall_s"] > 0
    iou = ws_mod.held_out_iou(model.eval(), InterRVOSDataset.load(synthetic / "val"), n=8)
    assert 0.0 <= iou <= 1.0


def test_warm_start_reuses_its_own_checkpoint_and_refuses_another(synthetic, tmp_path):
    cfg = ModelConfig.from_yaml("tiny")
    ws = ws_mod.WarmStartConfig(encoder_steps=0, decoder_steps=1, llm_steps=1, joint_steps=1, batch_size=2)
    out = ws_mod.warm_start(cfg, synthetic, tmp_path / "ws", ws, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert ws_mod.warm_start(cfg, synthetic, out, ws, progress=False) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # reused, not retrained

    with pytest.raises(ValueError, match="delete it or pick another folder"):
        ws_mod.warm_start(cfg, synthetic, out, ws_mod.WarmStartConfig(encoder_steps=0, decoder_steps=5),
                          progress=False)

    (out / ws_mod.RECORD_FILE).unlink()  # killed after saving the weights, before the record: made again
    ws_mod.warm_start(cfg, synthetic, out, ws, progress=False)
    assert ws_mod.record(out)["config"] == asdict(ws)
    assert (out / TRAINABLE_FILE).stat().st_mtime_ns != before[TRAINABLE_FILE]


def test_shape_frames_label_every_painted_object_pixel_with_its_shape_and_colour():
    from reviosa.data.synthetic import load_config
    from reviosa.data.synthetic.shapes import COLORS

    world = load_config()
    frames, shape, colour = ws_mod.shape_frames(np.random.default_rng(0), 6, 40, 48, world)
    assert frames.shape == (6, 40, 48, 3) and shape.shape == colour.shape == (6, 40, 48)
    assert bool(((shape > 0) == (colour > 0)).all()) and bool((shape > 0).any())
    assert int(shape.max()) <= len(world.shapes) and int(colour.max()) <= len(world.colors)
    for c, name in enumerate(world.colors, start=1):
        painted = frames[(colour == c).numpy()]
        assert (painted == COLORS[name]).all()  # the topmost object's colour, where objects overlap
    # nothing on the background carries an object colour
    for name in world.colors:
        assert not (frames[(shape == 0).numpy()] == COLORS[name]).all(-1).any()


def test_stage_0_trains_the_sam2_image_encoder_and_leaves_it_frozen(synthetic, tmp_path):
    cfg = ModelConfig.from_yaml("tiny")
    ws = ws_mod.WarmStartConfig(encoder_steps=3, decoder_steps=1, llm_steps=1, joint_steps=1, batch_size=2)
    out = ws_mod.warm_start(cfg, synthetic, tmp_path / "ws", ws, progress=False)

    torch.manual_seed(ws.seed)
    before = dict(build_model(cfg).named_parameters())
    model = from_pretrained(out)
    moved = [n for n, p in model.named_parameters() if n.startswith("sam.image_encoder.") and
             not torch.equal(p, before[n])]
    assert moved  # the encoder's weights were trained and saved with the checkpoint
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("sam.image_encoder."))
    assert not any("vision_tower" in n and not torch.equal(p, before[n])
                   for n, p in model.named_parameters())
    assert 0.0 <= ws_mod.record(out)["encoder_shape_accuracy"] <= 1.0
