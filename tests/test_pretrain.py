"""The pretraining recipe and the grounding probe: what they train, what they record, how they resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reviosa.data.format import InterRVOSDataset
from reviosa.model.checkpoint import TRAINABLE_FILE
from reviosa.model.config import ModelConfig
from reviosa.model.modeling import ReviosaModel
from reviosa.train.config import PretrainConfig
from reviosa.train.recipes import pretrain


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from reviosa.data.synthetic import SyntheticConfig, generate_splits

    root = tmp_path_factory.mktemp("pretrain") / "data"
    generate_splits(root, SyntheticConfig(frames=6, height=48, width=48), {"train": 3, "val": 2}, seed=0, workers=1)
    return root


def tiny_sets(data: Path, out: Path, encoder: int = 0, decoder: int = 2, llm: int = 2, joint: int = 2,
              val: bool = False) -> list[str]:
    return [f"data={data / 'train'}", f"val={data / 'val'}" if val else "val=null", f"out={out}", "batch_size=2",
            f"stages.encoder.steps={encoder}", f"stages.decoder.steps={decoder}", f"stages.llm.steps={llm}",
            f"stages.joint.steps={joint}"]


def tiny_pretrain(*args, **kwargs) -> PretrainConfig:
    return PretrainConfig.from_yaml("tiny", tiny_sets(*args, **kwargs))


def test_pretraining_trains_only_reviosas_parameters_and_records_itself(synthetic, tmp_path):
    cfg = tiny_pretrain(synthetic, tmp_path / "base", val=True)
    record = pretrain.run(cfg, progress=False)

    torch.manual_seed(cfg.seed)
    fresh = ReviosaModel.from_config(cfg.model)
    model = ReviosaModel.from_pretrained(cfg.out)
    before, after = dict(fresh.named_parameters()), dict(model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p, before[n])}
    # the parameters fine-tuning trains moved; the frozen image encoders did not
    assert any(n.startswith("sam.sam_mask_decoder.") for n in changed)
    assert any("lora_" in n for n in changed)
    assert not any(n.startswith("sam.image_encoder.") for n in changed)
    assert all(after[n].requires_grad for n in changed)  # nothing frozen (vision encoders, LLM base) moved

    assert record == pretrain.read_record(cfg.out)
    assert record["config"] == cfg.model_dump(mode="json", exclude={"out"}) and record["wall_s"] > 0
    assert 0.0 <= record["frame_iou_shuffled"] <= 1.0 and 0.0 <= record["frame_iou"] <= 1.0


def test_pretraining_reuses_its_own_checkpoint_and_refuses_another(synthetic, tmp_path):
    cfg = tiny_pretrain(synthetic, tmp_path / "base", decoder=1, llm=1, joint=1)
    pretrain.run(cfg, progress=False)
    out = Path(cfg.out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    pretrain.run(cfg, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # reused, not retrained

    with pytest.raises(ValueError, match="delete it or pick another folder"):
        pretrain.run(tiny_pretrain(synthetic, out, decoder=5, llm=1, joint=1), progress=False)

    (out / pretrain.RECORD_FILE).unlink()  # killed after saving the weights, before the record: made again
    pretrain.run(cfg, progress=False)
    assert pretrain.read_record(out)["config"]["stages"]["decoder"]["steps"] == 1
    assert (out / TRAINABLE_FILE).stat().st_mtime_ns != before[TRAINABLE_FILE]


def test_a_remade_pretraining_compares_equal_and_a_changed_one_does_not(synthetic, tmp_path):
    from typer.testing import CliRunner

    from reviosa.cli import app

    steps = {"encoder": 1, "decoder": 1, "llm": 1, "joint": 1, "val": True}
    first, again = (tiny_pretrain(synthetic, tmp_path / name, **steps) for name in ("first", "again"))
    pretrain.run(first, progress=False)
    pretrain.run(again, progress=False)
    a, b = Path(first.out), Path(again.out)
    weights = [ReviosaModel.from_pretrained(d).state_dict() for d in (a, b)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the remake is deterministic

    same = pretrain.compare(b, a)
    assert same["ok"] and same["config"] == "equal"
    assert set(same["numbers"]) == set(pretrain.HELD_OUT) and all(n["diff"] == 0 for n in same["numbers"].values())
    assert set(same["files"]) == {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()} - {pretrain.RECORD_FILE}
    assert {"reviosa.safetensors", "tokenizer/tokenizer.json"} <= set(same["files"])
    assert set(same["files"].values()) == {"equal"}

    # the reference moves: one held-out number by 0.05, one byte of its weights
    record = json.loads((a / pretrain.RECORD_FILE).read_text())
    record["decoder_iou"] += 0.05
    (a / pretrain.RECORD_FILE).write_text(json.dumps(record))
    data = bytearray((a / TRAINABLE_FILE).read_bytes())
    data[-1] ^= 1
    (a / TRAINABLE_FILE).write_bytes(bytes(data))
    moved = pretrain.compare(b, a)
    assert not moved["ok"] and moved["files"][TRAINABLE_FILE] == "differs"
    assert moved["numbers"]["decoder_iou"]["diff"] == pytest.approx(-0.05)
    assert pretrain.compare(b, a, tolerance=0.06)["ok"]  # the hashes are reported, not required

    # the command: remakes (here reuses) the folder, prints the table, exits 1 when they differ
    args = ["pretrain", "--config", "tiny", "--no-progress"]
    for item in tiny_sets(synthetic, b, **steps):
        args += ["--set", item]
    res = CliRunner().invoke(app, args + ["--compare", str(a)])
    assert res.exit_code == 1 and "DIFFERENT" in res.output and "decoder_iou" in res.output, res.output
    res = CliRunner().invoke(app, args + ["--compare", str(a), "--tolerance", "0.06"])
    assert res.exit_code == 0 and "the same pretraining" in res.output, res.output
    res = CliRunner().invoke(app, args + ["--compare", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "neither a shipped name" in res.output

    other = tiny_pretrain(synthetic, tmp_path / "other", **{**steps, "joint": 2})
    pretrain.run(other, progress=False)
    changed = pretrain.compare(other.out, b, tolerance=1.0)
    assert changed["config"] == "differs" and not changed["ok"]


def test_shape_frames_label_every_painted_object_pixel_with_its_shape_and_colour():
    from reviosa.data.synthetic import SyntheticConfig
    from reviosa.data.synthetic.shapes import COLORS

    world = SyntheticConfig()
    frames, shape, colour = pretrain.shape_frames(np.random.default_rng(0), 6, 40, 48, world)
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
    cfg = tiny_pretrain(synthetic, tmp_path / "base", encoder=3, decoder=1, llm=1, joint=1)
    record = pretrain.run(cfg, progress=False)

    torch.manual_seed(cfg.seed)
    before = dict(ReviosaModel.from_config(cfg.model).named_parameters())
    model = ReviosaModel.from_pretrained(cfg.out)
    moved = [n for n, p in model.named_parameters() if n.startswith("sam.image_encoder.") and
             not torch.equal(p, before[n])]
    assert moved  # the encoder's weights were trained and saved with the checkpoint
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("sam.image_encoder."))
    assert not any("vision_tower" in n and not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert 0.0 <= record["encoder_shape_accuracy"] <= 1.0


def test_pretrain_command_prints_the_resolved_config_and_refuses_bad_overrides():
    from typer.testing import CliRunner

    from reviosa.cli import app

    res = CliRunner().invoke(app, ["pretrain", "--config", "tiny", "--set", "stages.llm.steps=7", "--print-config"])
    assert res.exit_code == 0, res.output
    again = PretrainConfig.from_dict(yaml.safe_load(res.stdout))
    assert again.stages.llm.steps == 7 and again.model == ModelConfig.from_yaml("tiny")
    res = CliRunner().invoke(app, ["pretrain", "--config", "tiny", "--set", "stages.llm.bogus=1", "--print-config"])
    assert res.exit_code == 2 and "stages.llm.bogus" in res.output


def test_grounding_ceiling_scores_every_expression_with_the_protocol(synthetic):
    from reviosa.train.probes import ROWS, grounding_ceiling

    cfg = ModelConfig.from_yaml("tiny")
    train, val = InterRVOSDataset.load(synthetic / "train"), InterRVOSDataset.load(synthetic / "val")
    scores = grounding_ceiling(cfg, train, val, ROWS["all"], steps=2, batch_size=2, max_videos=1)
    has_target = any(e.has_target for e in next(iter(val.videos.values())).expressions.values())
    assert {"rvos_J", "rvos_F", "rvos_JF"} <= set(scores) and ("actor_JF" in scores) == has_target
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert json.dumps(scores)


def test_pair_samples_name_two_things_without_the_word_that_means_one_track_in_videos(synthetic):
    from reviosa.train import grounding

    ds = InterRVOSDataset.load(synthetic / "train")
    rng = np.random.default_rng(0)
    samples = [grounding.draw(ds, rng, pair_fraction=1.0) for _ in range(20)]
    pairs = [s for s in samples if len(s.masks) == 2]
    assert pairs  # every video has at least two objects in view at some frame
    for s in samples:
        phrases = s.text.split(grounding.PAIR_JOIN)
        assert len(phrases) == len(s.masks) == len(s.named)
        # "and" joins one track in the video expressions ("A and B moving together")
        assert " and " not in f" {s.text} "
        for phrase, (keys, view) in zip(phrases, s.named):
            words = phrase.split()
            assert words[0] == "the" and all(str(getattr(view, k)) in words for k in keys)


def test_the_ceiling_probe_starts_from_the_segmenter_it_is_given(synthetic):
    from reviosa.train.probes import ROWS, train_prompted_decoder

    cfg = ModelConfig.from_yaml("tiny")
    train = InterRVOSDataset.load(synthetic / "train")
    video = next(iter(train.videos.values()))
    frames, objs = train.read_frames(video, [0, 1]), [next(iter(video.objects.values()))] * 2
    torch.manual_seed(123)
    state = ReviosaModel.from_config(cfg).sam.state_dict()
    given = [train_prompted_decoder(cfg, train, "oracle", ROWS["all"], steps=0, sam_state=state)(frames, objs)
             for _ in range(2)]
    fresh = train_prompted_decoder(cfg, train, "oracle", ROWS["all"], steps=0)(frames, objs)
    assert torch.equal(given[0], given[1]) and not torch.allclose(given[0], fresh)
