"""Checkpoints of the official ReVIOSa code (``convert_to_hf.py`` layout, written here from tiny random weights)
imported with ``reviosa convert-official``: the weights arrive unchanged, and the result predicts, serves and
fine-tunes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.model import sam as sam_ops
from reviosa.model.batch import build_sample, collate
from reviosa.model.config import ModelConfig
from reviosa.model.convert import ConversionError
from reviosa.model.errors import CheckpointError
from reviosa.model.inference import predict_video
from reviosa.model.modeling import ReviosaModel
from reviosa.model.official import import_official_checkpoint, is_official_reviosa
from reviosa.model.tokenizer import SEG_ACT, SEG_TAR, build_tiny_tokenizer
from tests.test_model_convert import tiny_internvl, write_opengvlab

INTERACTION = "the red circle chases the blue square"
# ReVIOSa/model/configs/reviosa_1b.py: special_tokens, added in this order after InternVL's vocabulary
OFFICIAL_TOKENS = ["[SEG]", "<p>", "</p>", "<vp>", "</vp>", "[SEG_OBJ]"]


@dataclass
class Official:
    """An official-layout folder and the original modules its tensors came from."""

    src: Path
    internvl: nn.Module
    sam: nn.Module
    projection: nn.Sequential
    tokenizer: object


def write_official(cfg: ModelConfig, folder: Path, seed: int = 0) -> Official:
    """A ReVIOSa as ``convert_to_hf.py`` saves it: merged InternVL weights in the remote-code names,
    ``grounding_encoder.sam2_model.*`` with ``gamma`` → ``g_weight``, ``text_hidden_fcs.*``, two shards, the
    tokenizer with the official tokens and the remote-code files (which must never run)."""
    tok = build_tiny_tokenizer()
    tok.add_tokens(OFFICIAL_TOKENS, special_tokens=True)
    internvl = tiny_internvl(cfg, tok, seed=seed)
    torch.manual_seed(seed)
    sam = sam_ops.build_sam2(cfg.sam2).eval()
    hidden = cfg.mllm.text.hidden_size
    projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, sam.hidden_dim),
                               nn.Dropout(0.0))
    with torch.no_grad():  # no constant init (layer scales 1e-6, norms 1/0) that could hide a mix-up
        for p in [*sam.parameters(), *projection.parameters()]:
            p.add_(torch.randn_like(p) * 0.05)
    plain = folder.with_name(folder.name + "-internvl")
    write_opengvlab(internvl, tok, plain)
    weights = load_file(str(plain / "model.safetensors"))
    for k, v in sam.state_dict().items():
        name = k[: -len(".gamma")] + ".g_weight" if k.endswith(".gamma") else k
        weights[f"grounding_encoder.sam2_model.{name}"] = v.clone()
    weights.update({f"text_hidden_fcs.{k}": v.clone() for k, v in projection.state_dict().items()})
    folder.mkdir(parents=True)
    keys = sorted(weights)
    weight_map = {}
    for i, chunk in enumerate((keys[::2], keys[1::2])):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: weights[k] for k in chunk}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in chunk})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    conf = json.loads((plain / "config.json").read_text())
    conf.update(architectures=["ReVIOSaChatModel"], model_type="reviosa_chat", template="qwen_chat",
                auto_map={"AutoConfig": "configuration_reviosa_chat.ReVIOSaChatConfig",
                          "AutoModel": "modeling_reviosa_chat.ReVIOSaChatModel",
                          "AutoModelForCausalLM": "modeling_reviosa_chat.ReVIOSaChatModel"})
    conf["llm_config"]["vocab_size"] = len(tok)  # convert_to_hf.py: vocab_size = len(tokenizer)
    (folder / "config.json").write_text(json.dumps(conf, indent=1))
    for name in ("configuration_reviosa_chat.py", "modeling_reviosa_chat.py", "sam2.py"):
        (folder / name).write_text("raise RuntimeError('remote code must not run')\n")
    tok.save_pretrained(folder)
    shutil.rmtree(plain)
    return Official(folder, internvl, sam, projection, tok)


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig.from_yaml("tiny")


@pytest.fixture(scope="module")
def official(cfg, tmp_path_factory) -> Official:
    return write_official(cfg, tmp_path_factory.mktemp("official") / "ReVIOSa-tiny")


@pytest.fixture(scope="module")
def imported(official, tmp_path_factory) -> Path:
    return import_official_checkpoint(official.src, tmp_path_factory.mktemp("imported") / "reviosa", config="tiny",
                                      progress=False)


def _batch(cfg, net, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (cfg.train_frames, 48, 64, 3), dtype=np.uint8)
    act = rng.random((2, cfg.train_frames, 48, 64)) > 0.6
    tar = rng.random((2, cfg.train_frames, 48, 64)) > 0.6
    tar[1] = False
    sample = build_sample(cfg, net.tokenizer, frames, [INTERACTION, "the green star"], [True, False], act, tar)
    return collate([sample], net.tokenizer.pad_token_id)


def test_import_keeps_the_official_weights_tokens_and_predictions(official, imported):
    assert is_official_reviosa(official.src) and not is_official_reviosa(imported)
    assert sorted(p.name for p in imported.iterdir()) == sorted(
        ["config.yaml", "imported_from.json", "internvl", "reviosa.safetensors", "sam2.safetensors", "tokenizer"])
    saved = ModelConfig.from_yaml(imported / "config.yaml")
    assert saved.mllm.pretrained == "internvl" and saved.sam2.checkpoint == "sam2.safetensors"
    net = ReviosaModel.from_pretrained(imported).eval()

    # [SEG]/[SEG_OBJ] became [SEG_ACT]/[SEG_TAR] under the same ids; the other official tokens stay as they were
    ids = official.tokenizer.convert_tokens_to_ids
    assert (net.token_ids[SEG_ACT], net.token_ids[SEG_TAR]) == (ids("[SEG]"), ids("[SEG_OBJ]"))
    assert len(net.tokenizer) == len(official.tokenizer)
    extra = OFFICIAL_TOKENS[1:5]
    assert [net.tokenizer.convert_tokens_to_ids(t) for t in extra] == [ids(t) for t in extra]
    rows = torch.tensor([ids("[SEG]"), ids("[SEG_OBJ]"), ids("<vp>")])
    with torch.no_grad():
        assert torch.equal(net.lm.get_input_embeddings()(rows), official.internvl.get_input_embeddings()(rows))
        x = torch.randn(5, net.config.mllm.text.hidden_size)
        assert torch.equal(net.lm.lm_head(x), official.internvl.lm_head(x))
    # the projection and all of SAM2 (mask decoder included) arrive unchanged; the new LoRA starts at zero
    for k, v in official.projection.state_dict().items():
        assert torch.equal(net.projection.state_dict()[k], v), k
    mine = net.sam.state_dict()
    assert mine.keys() == official.sam.state_dict().keys()
    for k, v in official.sam.state_dict().items():
        assert torch.equal(mine[k], v), k
    lora_b = [p for n, p in net.named_parameters() if "lora_B" in n]
    assert lora_b and all(not p.any() for p in lora_b)

    # a teacher-forced pass equals one computed from the original tensors
    cfg = net.config
    batch = _batch(cfg, net)
    with torch.no_grad():
        out = net(batch)
        args = dict(input_ids=batch.input_ids, pixel_values=batch.pixel_values, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids)
        hidden = official.internvl.model(**args).last_hidden_state
        assert torch.equal(net.lm.model(**args).last_hidden_state, hidden)
        emb = official.projection(hidden[batch.input_ids == ids("[SEG]")])              # (B·E, D)
        feats, _, sizes = sam_ops.frame_features(official.sam, batch.sam_images)
        pix, high = sam_ops.no_memory_features(official.sam, feats, sizes), sam_ops.high_res_maps(feats, sizes)
        t = batch.num_frames
        b, e = batch.has_target.shape
        idx = (torch.arange(b).repeat_interleave(e)[:, None] * t + torch.arange(t)).flatten()
        ref = sam_ops.decode(official.sam, pix[idx], [h[idx] for h in high], emb.repeat_interleave(t, 0))
    assert torch.allclose(out.actor_logits.flatten(0, 2), ref["low_res"][:, 0], atol=1e-5, rtol=0)

    frames = np.random.default_rng(1).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    pred = predict_video(net, frames, INTERACTION, answer="Sure, it is [SEG_ACT] and [SEG_TAR].")
    assert pred.actor.shape == (3, 40, 56) and pred.target is not None and pred.text.count(SEG_ACT) == 1
    assert predict_video(net, frames, INTERACTION).actor.shape == (3, 40, 56)   # generated answer


def test_imported_checkpoint_moves_serves_and_finetunes(official, imported, tmp_path):
    from reviosa.data.synthetic import SyntheticConfig, generate_split
    from reviosa.serve.config import ServeConfig
    from reviosa.serve.inputs import VideoRequest
    from reviosa.serve.model import ReviosaPredictor
    from reviosa.train.config import TrainConfig
    from reviosa.train.recipes.finetune import build_model, run

    moved = Path(shutil.copytree(imported, tmp_path / "elsewhere"))      # the carried bases travel with the folder
    predictor = ReviosaPredictor(ServeConfig(model_uri=str(moved)))
    assert predictor.load() is True
    assert torch.equal(predictor.net.projection[2].weight, official.projection[2].weight)
    assert predictor.net.config.mllm.pretrained == str((moved / "internvl").resolve())
    frames = np.random.default_rng(3).integers(0, 255, (2, 32, 48, 3), dtype=np.uint8)
    answer = predictor.infer(VideoRequest(frames=frames, expression=INTERACTION))
    assert (answer["num_frames"], answer["height"], answer["width"]) == (2, 32, 48)

    # init_from: the run's model config names no base of its own, so the checkpoint's carried bases are used
    model = build_model(TrainConfig.from_yaml("tiny", ["data.train=x", f"init_from={moved}",
                                                       "model.loss.aml_heads=[]"]))
    assert model.config.sam2.checkpoint == str((moved / "sam2.safetensors").resolve())
    assert model.config.loss.aml_heads == []
    ref = dict(predictor.net.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, ref[name]), name

    # and a real (one-step) run of the training recipe, as `reviosa train --set init_from=DST` makes it
    generate_split(tmp_path / "train", SyntheticConfig(frames=6, height=64, width=64), 2, seed=0, split="train",
                   progress=False)
    over = {"data.train": str(tmp_path / "train"), "data.val": None, "out": str(tmp_path / "run"), "steps": 1,
            "checkpoint.every": 1, "tracking.enabled": False, "init_from": str(moved), "batch_size": 1}
    summary = run(TrainConfig.from_yaml("tiny", [f"{k}={json.dumps(v)}" for k, v in over.items()]), progress=False)
    assert summary["step"] == 1 and all(np.isfinite(v) for v in summary["losses"].values())
    tuned = ReviosaModel.from_pretrained(tmp_path / "run" / "final")
    assert tuned.config.mllm.pretrained == str((moved / "internvl").resolve())
    assert any(p.any() for n, p in tuned.named_parameters() if "lora_B" in n)          # a new adapter was trained
    frozen = "model.language_model.layers.0.mlp.up_proj.base_layer.weight"
    assert torch.equal(dict(tuned.lm.named_parameters())[frozen], dict(model.lm.named_parameters())[frozen])


def _edit(src: Path, tmp: Path, change) -> Path:
    """A copy of ``src`` whose weights ``change(weights)`` edited (kept in the original shards)."""
    out = Path(shutil.copytree(src, tmp))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    weights = {k: v for s in shards for k, v in load_file(str(out / s)).items()}
    change(weights)
    index["weight_map"] = {k: index["weight_map"].get(k, shards[0]) for k in weights}
    for s in shards:
        save_file({k: v for k, v in weights.items() if index["weight_map"][k] == s}, str(out / s),
                  metadata={"format": "pt"})
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return out


def test_missing_unknown_or_misfit_weights_are_clear_errors(official, tmp_path):
    def fails(src, match, **kw):
        dst = tmp_path / f"out-{src.name}"
        with pytest.raises(ConversionError, match=match):
            import_official_checkpoint(src, dst, config="tiny", progress=False, **kw)
        assert not dst.exists() and not list(tmp_path.glob(f".{dst.name}.tmp-*"))

    no_bias = _edit(official.src, tmp_path / "no_bias", lambda w: w.pop("text_hidden_fcs.2.bias"))
    fails(no_bias, r"text_hidden_fcs\.\* weights .*do not fit: missing \['text_hidden_fcs\.2\.bias'\]")
    extra = _edit(official.src, tmp_path / "extra",
                  lambda w: w.update({"grounding_encoder.sam2_model.bogus": torch.zeros(3)}))
    fails(extra, r"grounding_encoder\.sam2_model\.\* weights .*do not fit: 1 unexpected, e\.g\. \['bogus'\]")
    unknown = _edit(official.src, tmp_path / "unknown", lambda w: w.update({"text_exist_fcs.0.weight": torch.zeros(2)}))
    fails(unknown, r"'text_exist_fcs\.0\.weight' has no counterpart")
    no_layer = _edit(official.src, tmp_path / "no_layer",
                     lambda w: w.pop("language_model.model.layers.1.mlp.up_proj.weight"))
    fails(no_layer, r"lacks weights \['model\.language_model\.layers\.1\.mlp\.up_proj\.weight'\]")
    # the official SAM2 is v1: a 2.1 model config is told which setting fits
    with pytest.raises(ConversionError, match=r"3 missing.*set sam2\.version=2\b"):
        import_official_checkpoint(official.src, tmp_path / "v21", config="tiny", overrides=["sam2.version=2.1"],
                                   progress=False)

    internvl = Path(shutil.copytree(official.src, tmp_path / "internvl_chat"))
    conf = json.loads((internvl / "config.json").read_text())
    (internvl / "config.json").write_text(json.dumps({**conf, "model_type": "internvl_chat"}))
    fails(internvl, r"'internvl_chat' is not the official ReVIOSa's 'reviosa_chat'.*convert-internvl")
    phi3 = Path(shutil.copytree(official.src, tmp_path / "phi3"))
    (phi3 / "config.json").write_text(json.dumps({**conf, "template": "phi3_chat"}))
    fails(phi3, r"chat template 'phi3_chat'.*--any-template")
    with pytest.raises(CheckpointError, match="official ReVIOSa code: import it with `reviosa convert-official`"):
        ReviosaModel.from_pretrained(official.src)


def test_cli_convert_official(official, tmp_path):
    runner = CliRunner(env={"COLUMNS": "400"})
    dst = tmp_path / "cli"
    res = runner.invoke(app, ["convert-official", str(official.src), str(dst), "--config", "tiny"])
    assert res.exit_code == 0, res.output
    assert "imported:" in res.output
    assert json.loads((dst / "imported_from.json").read_text())["token_ids"] == {
        SEG_ACT: official.tokenizer.convert_tokens_to_ids("[SEG]"),
        SEG_TAR: official.tokenizer.convert_tokens_to_ids("[SEG_OBJ]")}
    res = runner.invoke(app, ["convert-official", str(official.src), str(dst), "--config", "tiny"])
    assert res.exit_code != 0 and "already exists" in res.output
    res = runner.invoke(app, ["convert-official", str(official.src), str(tmp_path / "x"), "--config", "tiny",
                              "--set", "sam2.version=3"])
    assert res.exit_code != 0 and "sam2.version" in res.output
