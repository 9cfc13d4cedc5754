"""The shipped tiny base checkpoint: its files are the ones recorded, it was made by the recorded config, it fits the
tiny model config, it loads by name wherever a checkpoint path is taken, and it grounds descriptions."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reviosa.model import pretrained
from reviosa.model.config import ModelConfig
from reviosa.model.errors import CheckpointError
from reviosa.model.modeling import ReviosaModel
from reviosa.train.config import PretrainConfig, TrainConfig

NAME = "reviosa-tiny-base"
ROOT = Path(pretrained.__file__).parent / NAME


def test_the_shipped_files_are_the_ones_the_manifest_hashes_and_fit_in_10_mb():
    manifest = json.loads((ROOT / "manifest.json").read_text())
    files = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["sha256"]) == files
    for rel, digest in manifest["sha256"].items():
        assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest, rel
    assert sum((ROOT / rel).stat().st_size for rel in files) <= 10 * 2**20
    assert {"reviosa.safetensors", "config.yaml", "pretrain.json"} <= set(files)


def test_the_base_was_made_by_the_recorded_command_and_fits_the_tiny_config():
    manifest = json.loads((ROOT / "manifest.json").read_text())
    argv = shlex.split(manifest["command"])
    assert argv[:4] == ["reviosa", "pretrain", "--config", "tiny"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    remade = PretrainConfig.from_yaml("tiny", sets).model_dump(mode="json", exclude={"out"})
    record = json.loads((ROOT / "pretrain.json").read_text())
    # the shipped pretraining config today is the one that made the base: a changed YAML must be shipped again
    assert record["config"] == remade == manifest["record"]["config"]
    saved = ModelConfig.from_yaml(ROOT / "config.yaml")
    assert saved == ModelConfig.from_yaml("tiny")
    assert TrainConfig.from_yaml("tiny").init_from == NAME
    for key in ("encoder_shape_accuracy", "encoder_colour_accuracy", "decoder_iou", "frame_iou", "frame_iou_shuffled",
                "wall_s"):
        assert key in record, key


def test_the_shipped_folder_compares_equal_with_its_manifest():
    from reviosa.train.recipes import pretrain

    result = pretrain.compare(ROOT, NAME)
    record = json.loads((ROOT / "pretrain.json").read_text())
    assert result["ok"] and result["config"] == "equal" and set(result["files"].values()) == {"equal"}
    assert {k: n["made"] for k, n in result["numbers"].items()} == {k: record[k] for k in pretrain.HELD_OUT}


def test_the_base_loads_by_name_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    model = ReviosaModel.from_pretrained(NAME)
    assert model.config == ModelConfig.from_yaml("tiny")

    copy = tmp_path / "shipped"
    shutil.copytree(ROOT.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", copy)
    weights = copy / NAME / "reviosa.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        ReviosaModel.from_pretrained(NAME)
    (copy / NAME / "extra.txt").write_text("x")
    with pytest.raises(CheckpointError, match="differ from the manifest"):
        pretrained.verify(NAME)


def test_a_local_folder_of_the_same_name_wins(tmp_path, monkeypatch):
    torch.manual_seed(3)
    local = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
    local.save_pretrained(tmp_path / NAME)
    monkeypatch.chdir(tmp_path)
    loaded = dict(ReviosaModel.from_pretrained(NAME).named_parameters())
    assert all(torch.equal(loaded[n], p) for n, p in local.named_parameters() if p.requires_grad)


def test_the_base_grounds_descriptions_on_unseen_videos(tmp_path):
    from reviosa.data.format import InterRVOSDataset
    from reviosa.data.synthetic import SyntheticConfig, generate_splits
    from reviosa.train.grounding import held_out_iou

    # videos of another seed than the base's pretraining split, at the size it was made for
    generate_splits(tmp_path, SyntheticConfig(frames=6, height=64, width=64), {"fresh": 6}, seed=123, workers=1)
    ds = InterRVOSDataset.load(tmp_path / "fresh")
    model = ReviosaModel.from_pretrained(NAME).eval()
    torch.manual_seed(0)
    real = held_out_iou(model, ds, n=48, seed=5)
    shuffled = held_out_iou(model, ds, n=48, seed=5, shuffle_text=True)
    # a model that ignored the description would score the same with another sample's text
    assert real > shuffled + 0.2, (real, shuffled)
    assert np.isfinite(real)
