"""Trainer pieces: config errors, deterministic sharded data, augmentation, LR schedule, a short run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reviosa.config import ConfigError
from reviosa.data.synthetic import SyntheticConfig, generate_split
from reviosa.train.config import AugmentConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A small synthetic split (6 videos of 8 frames, 64x64)."""
    out = tmp_path_factory.mktemp("synth") / "train"
    generate_split(out, SyntheticConfig(frames=8, height=64, width=64), 6, seed=0, split="train", progress=False)
    return out


def tiny_cfg(synth: Path, out: Path, **over) -> TrainConfig:
    base = {"data.train": str(synth), "data.val": None, "out": str(out), "steps": 4, "checkpoint.every": 2,
            "tracking.enabled": False, "validation.max_videos": 2}
    base.update(over)
    return TrainConfig.from_yaml("tiny", [f"{k}={json.dumps(v)}" for k, v in base.items()])


def run_cli(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "reviosa.train", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


def sets(cfg: dict) -> list[str]:
    return [a for k, v in cfg.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\ndata: {train: x}\nsteps: 0\noptim: {lr: -1}\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(bad)
    msg = str(err.value)
    assert "bad.yaml" in msg and "steps" in msg and "optim.lr" in msg and "bogus" in msg
    with pytest.raises(ConfigError, match="no such TrainConfig"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    # the run's model is its own section: one override syntax reaches into it, the rest of tiny's loss stays
    cfg = TrainConfig.from_yaml("tiny", ["model.loss.aml_heads=[]"])
    assert cfg.model.loss.aml_heads == [] and cfg.model.loss.num_points == 0 and cfg.model.name == "reviosa-tiny"
    with pytest.raises(ConfigError, match="aml_heads entry .99, 0."):
        TrainConfig.from_yaml("tiny", ["model.loss.aml_heads=[[99, 0]]"])
    with pytest.raises(ConfigError, match="model.loss.aml_weight"):  # AML is switched off by its heads, one way
        TrainConfig.from_yaml("tiny", ["model.loss.aml_weight=0"])
    with pytest.raises(ConfigError, match="field model: .*no such ModelConfig"):
        TrainConfig.from_yaml("tiny", ["model=nope"])


def test_init_from_loads_the_checkpoint_weights_into_the_runs_model_config(tmp_path):
    import torch

    from reviosa.model.config import ModelConfig
    from reviosa.model.errors import CheckpointError
    from reviosa.model.modeling import ReviosaModel
    from reviosa.train.recipes.finetune import build_model

    saved = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
    assert saved.config.loss.aml_heads
    ckpt = saved.save_pretrained(tmp_path / "ckpt")
    cfg = TrainConfig.from_yaml("tiny", ["data.train=x", f"init_from={ckpt}", "model.loss.aml_heads=[]"])
    model = build_model(cfg)
    assert model.config == cfg.model and model.config.loss.aml_heads == []
    mine = dict(model.named_parameters())
    for name, p in saved.named_parameters():
        assert torch.equal(mine[name], p), name  # the checkpoint's weights, not a fresh seeded init
    shape = TrainConfig.from_yaml("tiny", ["data.train=x", f"init_from={ckpt}", "model.lora.r=8"])
    with pytest.raises(CheckpointError, match="shape"):
        build_model(shape)


def test_shipped_ablation_rows_are_table_4(tmp_path):
    from reviosa.train import ablation

    rows = ablation.rows()
    assert list(rows) == ["i", "ii", "iii", "iv"]
    for name, row in rows.items():
        cfg = TrainConfig.from_yaml("tiny", ["data.train=x", *row.overrides])
        # the row's switches are what its overrides do to the model: AML off = no heads, one token = tied rows
        assert bool(cfg.model.loss.aml_heads) == row.aml, name
        assert cfg.model.shared_seg_token == (not row.seg_tokens), name
        assert ablation.row_for(aml=row.aml, tokens=row.seg_tokens) == name
    assert {(r.seg_tokens, r.aml) for r in rows.values()} == {(False, False), (False, True), (True, False),
                                                              (True, True)}
    assert rows["iv"].overrides == []  # ReVIOSa is the shipped model config itself

    from reviosa.train.recipes.finetune import load_config

    # the row comes last: swapping the whole model in --set cannot undo it
    cfg = load_config("tiny", ["data.train=x", "model=tiny", "model.loss.aml_heads=[[1, 1]]"], ablation="i")
    assert cfg.model.loss.aml_heads == [] and cfg.model.shared_seg_token


def test_clips_are_deterministic_and_ranks_disjoint(synth):
    from reviosa.data.format import InterRVOSDataset
    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel
    from reviosa.train.data import ExpressionClips, make_loader

    cfg = ModelConfig.from_yaml("tiny")
    model = ReviosaModel.from_config(cfg)
    ds = InterRVOSDataset.load(synth)
    clips = ExpressionClips(ds, cfg, model.tokenizer, expressions_per_sample=2, seed=3)
    assert len(clips) == sum(len(v.expressions) for v in ds.videos.values())
    first = [clips.draw(i) for i in range(len(clips))]
    assert first == [clips.draw(i) for i in range(len(clips))]
    assert {(v, e[0]) for v, e, _ in first} == set(clips.items)  # every expression anchors once per epoch
    assert all(len(e) == 2 and len(f) == cfg.train_frames and f == sorted(f) for _, e, f in first)
    has_target = [ds.videos[v].expressions[e[0]].has_target for v, e, _ in first]
    assert any(has_target) and not all(has_target)  # interaction and plain expressions are mixed
    clips.set_epoch(1)
    assert [clips.draw(i) for i in range(len(clips))] != first
    sample = clips[0]
    assert sample.actor_masks.shape[:2] == (2, cfg.train_frames)

    shards = []
    for rank in range(2):
        _, sampler = make_loader(clips, 2, rank, 2, seed=0)
        sampler.set_epoch(0)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) and not set(shards[0]) & set(shards[1])
    _, sampler = make_loader(clips, 2, 0, 2, seed=0)
    sampler.set_epoch(0)
    sampler.start = 4
    assert list(sampler) == shards[0][4:] and len(sampler) == len(shards[0]) - 4
    with pytest.raises(ValueError, match="too few"):
        make_loader(clips, len(clips), 0, 2, seed=0)


def test_augment_moves_masks_with_frames():
    from reviosa.train.data import augment

    frames = np.zeros((2, 4, 6, 3), np.uint8)
    frames[:, :, 0] = 200
    masks = np.zeros((1, 2, 4, 6), bool)
    masks[..., 0] = True
    out, (m,) = augment(frames, [masks], AugmentConfig(hflip=1.0), np.random.default_rng(0))
    assert (out[:, :, -1] == 200).all() and m[..., -1].all() and not m[..., 0].any()
    out, (m2,) = augment(frames, [masks], AugmentConfig(brightness=0.2, contrast=0.2), np.random.default_rng(0))
    assert out.dtype == np.uint8 and not np.array_equal(out, frames) and np.array_equal(m2, masks)


def test_lr_schedule_warms_up_then_decays():
    from reviosa.train.optim import lr_lambda

    f = lr_lambda(10, 100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) < f(20) and f(100) == pytest.approx(0.1)


def test_single_process_run_learns_and_saves(synth, tmp_path):
    """A short CLI run: losses logged per step, the training loss falls, final weights load with from_pretrained."""
    out = tmp_path / "run"
    proc = run_cli(["--config", "tiny", "--no-progress",
                    *sets({"data.train": str(synth), "data.val": None, "out": str(out), "steps": 12,
                           "checkpoint.every": 6, "tracking.enabled": False, "optim.lr": 3e-3,
                           "optim.warmup_steps": 0, "data.expressions_per_sample": 1, "batch_size": 2})])
    assert proc.returncode == 0, proc.stderr[-3000:]
    hist = [json.loads(ln) for ln in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == list(range(1, 13))
    for key in ("loss", "loss_seg", "loss_dice", "loss_aml", "loss_text", "lr", "samples_per_s"):
        assert all(np.isfinite(h[key]) for h in hist), key
    assert np.mean([h["loss"] for h in hist[-3:]]) < np.mean([h["loss"] for h in hist[:3]])
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 12
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-0000006", "step-0000012"]

    from reviosa.model.modeling import ReviosaModel
    from reviosa.train.distributed import param_checksum

    model = ReviosaModel.from_pretrained(out / "final")
    assert param_checksum(model) == json.loads((out / "ranks" / "rank-0.json").read_text())["checksum"]


def test_mask_only_steps_train_the_first_steps_on_the_mask_losses_alone(synth, tmp_path, monkeypatch):
    from reviosa.train.recipes.finetune import run

    monkeypatch.setenv("MASTER_ADDR", "localhost")  # overwritten for the run, then given back

    cfg = tiny_cfg(synth, tmp_path / "run", steps=3, mask_only_steps=2, batch_size=1,
                   **{"data.expressions_per_sample": 1, "checkpoint.every": 3})
    before = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    run(cfg, progress=False)
    # an in-process run leaves no launcher variables behind (a later run would reuse its port) ...
    assert {k: os.environ.get(k) for k in before} == before
    # ... nor a process group DeepSpeed would still broadcast over: a second run in this process works
    again = run(tiny_cfg(synth, tmp_path / "again", steps=1, batch_size=1,
                         **{"data.expressions_per_sample": 1, "checkpoint.every": 1}), progress=False)
    assert again["step"] == 1
    w = cfg.model.loss
    hist = [json.loads(ln) for ln in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    mask = [w.bce_weight * h["loss_seg"] + w.dice_weight * h["loss_dice"] for h in hist]
    assert all(h["loss_text"] > 0.1 for h in hist)  # the text loss is still computed and logged
    assert [h["loss"] == pytest.approx(m, rel=1e-5) for h, m in zip(hist, mask)] == [True, True, False]
    assert hist[2]["loss"] == pytest.approx(mask[2] + w.text_weight * hist[2]["loss_text"]
                                            + w.aml_weight * hist[2]["loss_aml"], rel=1e-5)


def test_bad_split_is_a_clear_error(tmp_path):
    proc = run_cli(["--config", "tiny", "--set", f"data.train={tmp_path / 'nope'}", "--set", f"out={tmp_path}/o",
                    "--set", "tracking.enabled=false"])
    assert proc.returncode != 0 and "nope" in proc.stderr


def test_single_token_ablation_keeps_the_two_rows_tied(synth):
    """Ablation (i)/(ii): [SEG_TAR] is [SEG_ACT] (equal rows through training); untied rows drift apart."""
    import torch

    from reviosa.data.format import InterRVOSDataset
    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.shared_token import seg_rows
    from reviosa.train.data import Collator, ExpressionClips

    cfg = ModelConfig.from_yaml("tiny")
    ds = InterRVOSDataset.load(synth)
    rows = {}
    for tied in (True, False):
        torch.manual_seed(0)
        model = ReviosaModel.from_config(cfg.with_overrides([f"shared_seg_token={str(tied).lower()}"]))
        act, tar = seg_rows(model)
        assert torch.equal(act, tar) == tied
        clips = ExpressionClips(ds, cfg, model.tokenizer, 2)
        interaction = next(i for i, (v, e) in enumerate(clips.items) if ds.videos[v].expressions[e].has_target)
        batch, _ = Collator(model.tokenizer)([clips[interaction]])
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        before = seg_rows(model)
        for _ in range(2):
            model(batch).loss.backward()
            opt.step()
            opt.zero_grad()
        rows[tied] = seg_rows(model)
        assert not torch.equal(rows[tied][0], before[0])  # the token rows do train
    torch.testing.assert_close(rows[True][0], rows[True][1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(rows[False][0] - rows[False][1], torch.zeros_like(rows[False][0]))
    # starting the ablation from weights trained with two tokens (as the learning benchmark does) ties them too
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        two = model.save_pretrained(Path(tmp) / "two-tokens")
        act, tar = seg_rows(ReviosaModel.from_pretrained(two))
        assert not torch.equal(act, tar)
        act, tar = seg_rows(ReviosaModel.from_pretrained(two, config=cfg.with_overrides(["shared_seg_token=true"])))
        assert torch.equal(act, tar)


def test_role_overlap_tells_a_role_blind_model_from_a_role_aware_one():
    from types import SimpleNamespace

    from reviosa.train.validation import score_expression, summarize

    gt_act = np.zeros((3, 16, 16), dtype=bool)
    gt_act[:, 2:6, 2:6] = True
    gt_tar = np.zeros_like(gt_act)
    gt_tar[:, 9:14, 9:14] = True
    both = gt_act | gt_tar
    exp = SimpleNamespace(exp_id="0", has_target=True)
    plain = SimpleNamespace(exp_id="1", has_target=False)
    aware = [score_expression("v", exp, gt_act, gt_tar, gt_act, gt_tar), score_expression("v", plain, gt_act, None,
                                                                                          gt_act, None)]
    blind = [score_expression("v", exp, gt_act, gt_tar, both, both)]
    assert summarize(aware)["role_iou"] == 0.0 and "role_iou" not in aware[1]
    assert summarize(blind)["role_iou"] == 1.0
    # A role-blind union mask scores each role by its share of the union (16 and 25 of 41 pixels per frame).
    assert summarize(blind)["actor_J"] == pytest.approx(16 / 41)
    assert summarize(blind)["target_J"] == pytest.approx(25 / 41)


def test_train_command_prints_the_resolved_config():
    import yaml
    from typer.testing import CliRunner

    from reviosa.cli import app

    res = CliRunner().invoke(app, ["train", "--config", "tiny", "--ablation", "iii", "--set", "optim.lr=1e-4",
                                   "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = TrainConfig.from_dict(yaml.safe_load(res.stdout))
    assert cfg == TrainConfig.from_yaml("tiny", ["optim.lr=1e-4", "model.loss.aml_heads=[]"])
    res = CliRunner().invoke(app, ["train", "--config", "tiny", "--ablation", "v", "--print-config"])
    assert res.exit_code == 2 and "no such Ablation" in res.output
