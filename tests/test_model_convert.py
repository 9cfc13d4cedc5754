"""Checkpoint conversion: OpenGVLab InternVL-2.5 → transformers (tiny random models in the original layout and the
published 1B/4B key lists), and SAM2 / SAM2.1 against the sam2 package's own configs and checkpoint format."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import InternVLForConditionalGeneration
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.model.batch import build_sample, collate
from reviosa.model.checkpoint import save_pretrained
from reviosa.model.config import ModelConfig
from reviosa.model.convert import ConversionError, convert_internvl_checkpoint, ensure_hf_internvl, source_fingerprint
from reviosa.model.mllm import build_mllm, internvl_config
from reviosa.model.modeling import ReviosaModel
from reviosa.model.tokenizer import IMG_CONTEXT, IMG_END, IMG_START, build_tiny_tokenizer

INTERACTION = "the red circle chases the blue square"


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig.from_yaml("tiny")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def tiny_internvl(cfg, tokenizer, *, qk_norm=False, tie=False, seed=0):
    """A random transformers InternVL shaped like the tiny config, with InternViT's qkv bias (and optional qk-norm)."""
    conf = internvl_config(cfg, len(tokenizer), tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    conf.vision_config.attention_bias = True
    conf.vision_config.use_qk_norm = qk_norm
    conf.tie_word_embeddings = conf.text_config.tie_word_embeddings = tie
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(conf).eval()
    with torch.no_grad():  # no weight may keep a constant init (ones, zeros, 0.1) that would hide a mix-up
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


def _to_original(key: str) -> str:
    """Inverse of the conversion, written independently: a transformers InternVL name → the OpenGVLab one."""
    subs = [(r"^model\.vision_tower\.", "vision_model."), (r"\.encoder\.layer\.", ".encoder.layers."),
            (r"embeddings\.cls_token$", "embeddings.class_embedding"),
            (r"embeddings\.position_embeddings$", "embeddings.position_embedding"),
            (r"embeddings\.patch_embeddings\.projection\.", "embeddings.patch_embedding."),
            (r"\.lambda_(\d)$", r".ls\1"), (r"\.layernorm_before\.", ".norm1."), (r"\.layernorm_after\.", ".norm2."),
            (r"\.attention\.projection_layer\.", ".attn.proj."), (r"\.attention\.(q_norm|k_norm)\.", r".attn.\1."),
            (r"^model\.multi_modal_projector\.layer_norm\.", "mlp1.0."),
            (r"^model\.multi_modal_projector\.linear_1\.", "mlp1.1."),
            (r"^model\.multi_modal_projector\.linear_2\.", "mlp1.3."),
            (r"^model\.language_model\.", "language_model.model."), (r"^lm_head\.", "language_model.lm_head.")]
    for pattern, repl in subs:
        key = re.sub(pattern, repl, key)
    return key


def write_opengvlab(model, tokenizer, folder: Path, *, shards: int = 1, dtype=torch.float32) -> Path:
    """Save ``model`` as an original InternVL-2.5 checkpoint: fused qkv, mlp1, internvl_chat config, tokenizer."""
    folder.mkdir(parents=True)
    state = {k: v.detach().to(dtype).clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    out = {}
    for key in list(state):
        if ".attention.q_proj." in key:
            parts = [state.pop(key.replace(".q_proj.", f".{n}_proj.")) for n in "qkv"]
            out[_to_original(key.replace(".attention.q_proj.", ".attn.qkv."))] = torch.cat(parts)
        elif ".attention.k_proj." not in key and ".attention.v_proj." not in key:
            out[_to_original(key)] = state[key]
    keys = sorted(out)
    if shards == 1:
        save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, chunk in enumerate(np.array_split(np.array(keys), shards)):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: out[k] for k in chunk}, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in chunk})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    v, t = model.config.vision_config, model.config.text_config
    llm = t.to_dict()
    llm.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", torch_dtype="bfloat16",
               rope_theta=t.rope_parameters["rope_theta"])
    llm.pop("rope_parameters", None)
    conf = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internvl2_5",
            "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                         "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
            "downsample_ratio": model.config.downsample_ratio, "force_image_size": v.image_size[0],
            "ps_version": "v2", "select_layer": -1, "dynamic_image_size": True, "use_thumbnail": True,
            "max_dynamic_patch": 12, "min_dynamic_patch": 1, "torch_dtype": "bfloat16",
            "llm_config": llm,
            "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
                              "hidden_size": v.hidden_size, "num_hidden_layers": v.num_hidden_layers,
                              "num_attention_heads": v.num_attention_heads, "intermediate_size": v.intermediate_size,
                              "image_size": v.image_size[0], "patch_size": v.patch_size[0], "num_channels": 3,
                              "qkv_bias": v.attention_bias, "qk_normalization": v.use_qk_norm,
                              "norm_type": v.norm_type, "layer_norm_eps": v.layer_norm_eps, "hidden_act": "gelu",
                              "initializer_factor": 0.1, "drop_path_rate": 0.0, "dropout": 0.0,
                              "attention_dropout": 0.0, "use_flash_attn": True}}
    (folder / "config.json").write_text(json.dumps(conf, indent=1))
    # The remote code that would otherwise run with trust_remote_code; conversion must never import it.
    (folder / "modeling_internvl_chat.py").write_text("raise RuntimeError('remote code must not run')\n")
    tokenizer.save_pretrained(folder)
    return folder


def _logits(model, tokenizer, seed=0):
    conf = model.config
    ids = tokenizer.encode(IMG_START + IMG_CONTEXT * conf.image_seq_length + IMG_END + "the red circle",
                           add_special_tokens=False)
    side = conf.vision_config.image_size[0]
    pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed)).to(model.dtype)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits


@pytest.mark.parametrize(("shards", "dtype", "qk_norm", "tie"), [(1, torch.float32, False, False),
                                                                 (3, torch.bfloat16, True, True)])
def test_conversion_is_bit_exact_and_gives_identical_logits(cfg, tokenizer, tmp_path, shards, dtype, qk_norm, tie):
    original = tiny_internvl(cfg, tokenizer, qk_norm=qk_norm, tie=tie).to(dtype)
    src = write_opengvlab(original, tokenizer, tmp_path / "InternVL2_5-tiny", shards=shards, dtype=dtype)
    dst = convert_internvl_checkpoint(src, tmp_path / "hf", progress=False)

    conf = json.loads((dst / "config.json").read_text())
    assert conf["model_type"] == "internvl"
    assert conf["image_token_id"] == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert conf["image_seq_length"] == cfg.mllm.tokens_per_frame
    assert conf["vision_config"]["use_qk_norm"] is qk_norm and conf["vision_config"]["attention_bias"] is True
    assert not list(dst.glob("*.py")) and not list(tmp_path.glob(".hf.tmp-*"))
    written = sorted(p.name for p in dst.glob("*.safetensors"))
    assert len(written) == shards and ((dst / "model.safetensors.index.json").is_file() == (shards > 1))

    weights = {}
    for p in written:
        weights.update(load_file(str(dst / p)))
    want = original.state_dict()
    if tie:
        want.pop("lm_head.weight")
    assert set(weights) == set(want)
    for k, v in want.items():
        assert weights[k].dtype == dtype and torch.equal(weights[k], v), k

    loaded = InternVLForConditionalGeneration.from_pretrained(dst, dtype=dtype).eval()
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # Reference: the same weights saved natively by transformers and loaded the same way (a model merely cast
    # with .to(bf16) differs, as that also casts its float32 rotary buffers).
    original.save_pretrained(tmp_path / "native")
    native = InternVLForConditionalGeneration.from_pretrained(tmp_path / "native", dtype=dtype).eval()
    a, b = _logits(native, tokenizer), _logits(loaded, tokenizer)
    assert a.shape[-1] == len(tokenizer) and torch.equal(a, b)
    if dtype == torch.float32:
        assert torch.equal(_logits(original, tokenizer), b)


def _revi_batch(cfg, net, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (cfg.train_frames, 48, 64, 3), dtype=np.uint8)
    act = rng.random((1, cfg.train_frames, 48, 64)) > 0.6
    tar = rng.random((1, cfg.train_frames, 48, 64)) > 0.6
    sample = build_sample(cfg, net.tokenizer, frames, [INTERACTION], [True], act, tar)
    return collate([sample], net.tokenizer.pad_token_id)


def test_opengvlab_folder_loads_through_from_pretrained(cfg, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("REVIOSA_CACHE", str(tmp_path / "cache"))
    original = tiny_internvl(cfg, tokenizer, seed=3)
    src = write_opengvlab(original, tokenizer, tmp_path / "InternVL2_5-tiny", shards=2)
    real = cfg.with_overrides([f"mllm.pretrained={src}"])

    torch.manual_seed(0)
    net = ReviosaModel.from_config(real)
    cached = [p for p in (tmp_path / "cache" / "internvl-hf").iterdir() if p.name != "fingerprints"]
    assert [p.name for p in cached] == [source_fingerprint(src)[:24]]
    inner = net.mllm.base_model.model
    vis = original.model.vision_tower.encoder.layer[1].attention
    got = inner.model.vision_tower.encoder.layer[1].attention
    assert torch.equal(got.k_proj.weight, vis.k_proj.weight) and torch.equal(got.v_proj.bias, vis.v_proj.bias)
    assert torch.equal(inner.model.multi_modal_projector.linear_2.weight,
                       original.model.multi_modal_projector.linear_2.weight)

    net.eval()
    batch = _revi_batch(real, net)
    with torch.no_grad():
        out = net(batch)
    assert all(torch.isfinite(v) for v in out.losses.values()) and out.target_logits is not None

    # A ReVIOSa checkpoint built on the OpenGVLab base reloads through the cached conversion (not a second one).
    stamp = (cached[0] / "config.json").stat().st_mtime_ns
    save_pretrained(net, tmp_path / "ckpt")
    torch.manual_seed(7)
    loaded = ReviosaModel.from_pretrained(tmp_path / "ckpt").eval()
    assert (cached[0] / "config.json").stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache" / "internvl-hf").iterdir())) == 2  # the conversion and the hash memo
    with torch.no_grad():
        again = loaded(batch)
    for k in out.losses:
        assert torch.equal(out.losses[k], again.losses[k]), k
    assert torch.equal(out.actor_logits, again.actor_logits)


def test_changed_source_gets_a_new_cache_entry(cfg, tokenizer, tmp_path):
    src = write_opengvlab(tiny_internvl(cfg, tokenizer), tokenizer, tmp_path / "src")
    first = ensure_hf_internvl(src, tmp_path / "cache")
    assert first.name == source_fingerprint(src)[:24] and ensure_hf_internvl(src, tmp_path / "cache") == first
    state = load_file(str(src / "model.safetensors"))
    state["mlp1.1.bias"] = state["mlp1.1.bias"] + 1
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    second = ensure_hf_internvl(src, tmp_path / "cache")
    assert second != first and second.name == source_fingerprint(src)[:24]
    new_bias = load_file(str(second / "model.safetensors"))["model.multi_modal_projector.linear_1.bias"]
    assert torch.equal(new_bias, state["mlp1.1.bias"])
    hf = tmp_path / "cache" / "internvl-hf"
    assert sorted(p.name for p in hf.iterdir()) == sorted([first.name, second.name, "fingerprints"])


def test_bad_inputs_give_clear_errors(cfg, tokenizer, tmp_path):
    src = write_opengvlab(tiny_internvl(cfg, tokenizer), tokenizer, tmp_path / "src", shards=2)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((src / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(ConversionError, match=r"pickle weights \['pytorch_model.bin'\].*never unpickled"):
        convert_internvl_checkpoint(pickled, tmp_path / "out1", progress=False)

    (src / "model-00002-of-00002.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(ConversionError, match=r"missing.*model-00002-of-00002\.safetensors|"
                                              r"model-00002-of-00002\.safetensors.*missing"):
        convert_internvl_checkpoint(src, tmp_path / "out2", progress=False)
    (src / "model-00002-of-00002.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ConversionError, match=r"model-00002-of-00002\.safetensors: not a readable safetensors file"):
        convert_internvl_checkpoint(src, tmp_path / "out2", progress=False)
    (tmp_path / "moved.safetensors").rename(src / "model-00002-of-00002.safetensors")

    index = json.loads((src / "model.safetensors.index.json").read_text())
    shard = src / index["weight_map"]["mlp1.1.weight"]
    state = load_file(str(shard))
    state["mlp1.1.weight"] = state["mlp1.1.weight"][:, :-1].contiguous()
    save_file(state, str(shard), metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"mlp1\.1\.weight has shape \(64, 127\) but config\.json implies "
                                              r"\(64, 128\)"):
        convert_internvl_checkpoint(src, tmp_path / "out3", progress=False)
    assert not (tmp_path / "out3").exists() and not list(tmp_path.glob(".out3.tmp-*"))

    conf = json.loads((src / "config.json").read_text())
    conf["llm_config"]["model_type"] = "internlm2"
    (src / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ConversionError, match="internlm2.*not supported"):
        convert_internvl_checkpoint(src, tmp_path / "out4", progress=False)

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="'llava' is not the transformers-native 'internvl'.*internvl_chat"):
        build_mllm(cfg, other)


def test_cli_convert_internvl(cfg, tokenizer, tmp_path):
    original = tiny_internvl(cfg, tokenizer, seed=5)
    src = write_opengvlab(original, tokenizer, tmp_path / "src")
    runner = CliRunner(env={"COLUMNS": "400"})  # rich would wrap the error box at 80 columns
    res = runner.invoke(app, ["convert-internvl", str(src), str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    assert "converted:" in res.output
    loaded = InternVLForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert torch.equal(loaded.lm_head.weight, original.lm_head.weight)
    res = runner.invoke(app, ["convert-internvl", str(src), str(tmp_path / "hf")])
    assert res.exit_code != 0 and "already exists" in res.output
    res = runner.invoke(app, ["convert-internvl", str(tmp_path / "nothing"), str(tmp_path / "hf2")])
    assert res.exit_code != 0 and "no config.json" in res.output


def test_opengvlab_folder_on_s3_is_fetched_and_converted(cfg, tokenizer, tmp_path, s3_storage, monkeypatch):
    original = tiny_internvl(cfg, tokenizer, seed=9)
    src = write_opengvlab(original, tokenizer, tmp_path / "InternVL2_5-tiny", shards=2)
    s3_storage.s3fs().put(str(src), f"{s3_storage.bucket}/bases/InternVL2_5-tiny", recursive=True)
    (tmp_path / "storage.yaml").write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(tmp_path / "storage.yaml"))
    monkeypatch.setenv("REVIOSA_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{s3_storage.bucket}/bases/InternVL2_5-tiny"
    net = ReviosaModel.from_config(cfg.with_overrides([f"mllm.pretrained={uri}"]))
    assert [p.name for p in (tmp_path / "cache" / "internvl-hf").iterdir() if p.name != "fingerprints"] == [
        source_fingerprint(src)[:24]]
    inner = net.mllm.base_model.model
    assert torch.equal(inner.model.vision_tower.encoder.layer[0].attention.q_proj.bias,
                       original.model.vision_tower.encoder.layer[0].attention.q_proj.bias)
    assert torch.equal(inner.lm_head.weight[: len(tokenizer)], original.lm_head.weight)


# ---------------------------------------------------------------------------------------------------------------
# The published InternVL2_5-1B/4B weights, written down from OpenGVLab's remote code (not from our mapping):
# modeling_intern_vit.py - InternVisionEmbeddings (class_embedding (1, 1, V), Conv2d patch_embedding with bias,
# position_embedding (1, patches + 1, V)), InternVisionEncoderLayer (attn.qkv fused with bias, attn.proj, mlp.fc1/fc2,
# norm1/norm2 = LayerNorm for norm_type "layer_norm", layer scales ls1/ls2; no final norm); modeling_internvl_chat.py -
# mlp1 = LayerNorm(4V) (0), Linear(4V, H) (1), GELU (2), Linear(H, H) (3); Qwen2ForCausalLM - q/k/v with bias, o_proj
# without, SwiGLU gate/up/down, RMSNorm weights, untied lm_head. Shapes are "A B" with symbols from the dims below.
VISION_EMBEDDINGS = [("embeddings.class_embedding", "1 1 V"), ("embeddings.patch_embedding.weight", "V 3 P P"),
                     ("embeddings.patch_embedding.bias", "V"), ("embeddings.position_embedding", "1 N V")]
VISION_LAYER = [("ls1", "V"), ("ls2", "V"), ("norm1.weight", "V"), ("norm1.bias", "V"), ("norm2.weight", "V"),
                ("norm2.bias", "V"), ("attn.qkv.weight", "3V V"), ("attn.qkv.bias", "3V"), ("attn.proj.weight", "V V"),
                ("attn.proj.bias", "V"), ("mlp.fc1.weight", "F V"), ("mlp.fc1.bias", "F"), ("mlp.fc2.weight", "V F"),
                ("mlp.fc2.bias", "V")]
PROJECTOR = [("mlp1.0.weight", "4V"), ("mlp1.0.bias", "4V"), ("mlp1.1.weight", "H 4V"), ("mlp1.1.bias", "H"),
             ("mlp1.3.weight", "H H"), ("mlp1.3.bias", "H")]
LLM_LAYER = [("self_attn.q_proj.weight", "H H"), ("self_attn.q_proj.bias", "H"), ("self_attn.k_proj.weight", "K H"),
             ("self_attn.k_proj.bias", "K"), ("self_attn.v_proj.weight", "K H"), ("self_attn.v_proj.bias", "K"),
             ("self_attn.o_proj.weight", "H H"), ("mlp.gate_proj.weight", "I H"), ("mlp.up_proj.weight", "I H"),
             ("mlp.down_proj.weight", "H I"), ("input_layernorm.weight", "H"), ("post_attention_layernorm.weight", "H")]
LLM_OTHER = [("language_model.model.embed_tokens.weight", "W H"), ("language_model.model.norm.weight", "H"),
             ("language_model.lm_head.weight", "W H")]
# config.json values: InternViT-300M-448px-V2_5 (24 layers, 1024 wide, 16 heads, MLP 4096, patch 14, image 448) for
# both; 1B: Qwen2.5-0.5B-Instruct (24 layers, 896, 14 heads / 2 kv heads of 64, MLP 4864); 4B: Qwen2.5-3B-Instruct
# (36 layers, 2048, 16 heads / 2 kv heads of 128, MLP 11008); vocabulary 151674 = Qwen2.5's 151665 + InternVL's 9
# (<img> </img> <IMG_CONTEXT>=151667 <quad> </quad> <ref> </ref> <box> </box>).
PUBLISHED = {
    "InternVL2_5-1B": dict(vision_layers=24, V=1024, heads=16, F=4096, P=14, image=448, layers=24, H=896, q_heads=14,
                           kv_heads=2, I=4864, W=151674),
    "InternVL2_5-4B": dict(vision_layers=24, V=1024, heads=16, F=4096, P=14, image=448, layers=36, H=2048, q_heads=16,
                           kv_heads=2, I=11008, W=151674),
}


def _shape(spec: str, dims: dict[str, int]) -> tuple[int, ...]:
    out = []
    for tok in spec.split():
        factor, sym = re.fullmatch(r"(\d*)([A-Z]?)", tok).groups()
        out.append(int(factor or 1) * (dims[sym] if sym else 1))
    return tuple(out)


def published_weights(d: dict) -> dict[str, tuple[int, ...]]:
    """Original weight name → shape of a published InternVL-2.5 checkpoint (from the tables above)."""
    dims = {"V": d["V"], "P": d["P"], "N": (d["image"] // d["P"]) ** 2 + 1, "F": d["F"], "H": d["H"], "I": d["I"],
            "K": d["kv_heads"] * d["H"] // d["q_heads"], "W": d["W"]}
    out = {f"vision_model.{k}": _shape(s, dims) for k, s in VISION_EMBEDDINGS}
    for i in range(d["vision_layers"]):
        out.update({f"vision_model.encoder.layers.{i}.{k}": _shape(s, dims) for k, s in VISION_LAYER})
    out.update({k: _shape(s, dims) for k, s in PROJECTOR + LLM_OTHER})
    for i in range(d["layers"]):
        out.update({f"language_model.model.layers.{i}.{k}": _shape(s, dims) for k, s in LLM_LAYER})
    return out


def published_config(d: dict) -> dict:
    """The parts of the published config.json that the conversion reads."""
    return {"model_type": "internvl_chat", "downsample_ratio": 0.5, "force_image_size": d["image"], "ps_version": "v2",
            "select_layer": -1, "template": "internvl2_5", "tie_word_embeddings": False,
            "vision_config": {"hidden_size": d["V"], "num_hidden_layers": d["vision_layers"],
                              "num_attention_heads": d["heads"], "intermediate_size": d["F"], "image_size": d["image"],
                              "patch_size": d["P"], "qkv_bias": True, "qk_normalization": False,
                              "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu",
                              "initializer_factor": 0.1},
            "llm_config": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": d["H"],
                           "num_hidden_layers": d["layers"], "num_attention_heads": d["q_heads"],
                           "num_key_value_heads": d["kv_heads"], "intermediate_size": d["I"], "vocab_size": d["W"],
                           "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                           "max_position_embeddings": 32768, "tie_word_embeddings": False}}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_internvl_weights_map_exactly_onto_transformers_internvl(name):
    from reviosa.model.convert import convert_tensor, expected_shapes, hf_config_from_opengvlab

    d = PUBLISHED[name]
    published = published_weights(d)
    if name == "InternVL2_5-1B":  # 938 M (1b.yaml) and 3.7 B in all: untied lm_head, no vision final norm
        assert round(sum(math.prod(s) for s in published.values()) / 1e6) == 938
    else:
        assert round(sum(math.prod(s) for s in published.values()) / 1e8) == 37
    hf = hf_config_from_opengvlab(published_config(d), image_token_id=151667)
    want = expected_shapes(hf)  # transformers' own InternVL on the meta device: nothing allocated
    got: dict[str, tuple[int, ...]] = {}
    for key, shape in published.items():
        for new, tensor in convert_tensor(key, torch.empty(shape, device="meta"), d["V"], name):
            assert new not in got, (key, new)
            got[new] = tuple(tensor.shape)
    assert set(got) == set(want), (sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5])
    assert got == want
    assert got["model.vision_tower.encoder.layer.23.attention.k_proj.weight"] == (d["V"], d["V"])


# ---------------------------------------------------------------------------------------------------------------
# SAM2 and SAM2.1: our builder against the sam2 package's own Hydra configs, and official-format checkpoints.
SAM2_VARIANTS = [(v, size, short) for v in ("2", "2.1") for size, short in
                 (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))]


def _hydra_sam2(version: str, short: str, meta: bool = True):
    """The sam2 package's model for one official config (configs/sam2/sam2_hiera_*.yaml or the sam2.1 ones)."""
    import sam2  # noqa: F401 - importing it registers its packaged configs with Hydra
    from hydra import compose
    from hydra.utils import instantiate

    from reviosa.model.sam import weights_on_meta

    prefix = "sam2" if version == "2" else "sam2.1"
    conf = compose(config_name=f"configs/{prefix}/{prefix}_hiera_{short}.yaml").model
    if not meta:
        return instantiate(conf, _recursive_=True)
    with weights_on_meta():
        return instantiate(conf, _recursive_=True)


def _settings(model) -> dict[str, object]:
    """Every plain setting (number, flag, string, list of them) of every submodule, by module path."""
    from collections.abc import Sequence

    out = {}
    for name, mod in model.named_modules():
        for k, v in vars(mod).items():
            if k.startswith("_") or k == "training":
                continue
            if isinstance(v, (bool, int, float, str)):
                out[f"{name}:{k}"] = v
            elif isinstance(v, Sequence) and all(isinstance(x, (bool, int, float, str)) for x in v):
                out[f"{name}:{k}"] = list(v)  # Hydra hands lists over as ListConfig
    return out


@pytest.mark.parametrize(("version", "size", "short"), SAM2_VARIANTS)
def test_sam2_builder_matches_each_official_hydra_config(version, size, short):
    from reviosa.model.config import SAM2Config
    from reviosa.model.sam import build_sam2, sam2_shapes, weights_on_meta

    ref = _hydra_sam2(version, short)
    cfg = SAM2Config(version=version, size=size)
    # same names and shapes => sam2{,.1}_hiera_<size>.pt load strictly; built on the meta device (Hiera-L is 224 M)
    assert sam2_shapes(cfg) == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    with weights_on_meta():
        ours = build_sam2(cfg)
    theirs, mine = _settings(ref), _settings(ours)
    assert len(theirs) > 1000
    assert {k: (theirs.get(k), mine.get(k)) for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k)} == {}
    assert ("obj_ptr_tpos_proj.weight" in ref.state_dict()) == (version == "2.1")


@pytest.fixture(scope="module")
def sam2_tiny_files(tmp_path_factory) -> dict[str, Path]:
    """Random SAM2 / SAM2.1 Hiera-T built by the sam2 package, saved like the official .pt files."""
    out = {}
    folder = tmp_path_factory.mktemp("sam2_official")
    for version in ("2", "2.1"):
        torch.manual_seed(11)
        ref = _hydra_sam2(version, "t", meta=False)
        path = folder / ("sam2_hiera_tiny.pt" if version == "2" else "sam2.1_hiera_tiny.pt")
        torch.save({"model": ref.state_dict()}, path)
        out[version] = path
    return out


@pytest.mark.parametrize("version", ["2", "2.1"])
def test_official_sam2_and_sam21_checkpoints_load_with_their_version(version, sam2_tiny_files):
    from reviosa.model.checkpoint import load_sam2_weights
    from reviosa.model.config import ModelConfig, SAM2Config
    from reviosa.model.sam import build_sam2

    # the version/size are ordinary model-config fields, e.g. --set sam2.version=2.1 --set sam2.size=tiny
    cfg = ModelConfig.from_yaml("1b", [f"sam2.version={version}", "sam2.size=tiny"]).sam2
    assert cfg == SAM2Config(version=version, size="tiny")
    ours = build_sam2(cfg)
    load_sam2_weights(ours, sam2_tiny_files[version])
    saved = torch.load(sam2_tiny_files[version], weights_only=True)["model"]
    assert ours.state_dict().keys() == saved.keys()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in saved.items())
    assert (ours.no_obj_embed_spatial is not None) == (version == "2.1") and ours.add_tpos_enc_to_obj_ptrs == (
        version == "2.1")


def test_wrong_sam2_checkpoint_names_the_mismatch_and_the_setting(sam2_tiny_files, tmp_path):
    from reviosa.model.checkpoint import load_sam2_weights, sam2_state_problems
    from reviosa.model.config import SAM2Config
    from reviosa.model.errors import CheckpointError
    from reviosa.model.sam import build_sam2, sam2_shapes

    v1 = build_sam2(SAM2Config(size="tiny"))
    with pytest.raises(CheckpointError) as err:
        load_sam2_weights(v1, sam2_tiny_files["2.1"])
    msg = str(err.value)
    assert "sam2.1_hiera_tiny.pt" in msg and "3 unexpected" in msg and "no_obj_embed_spatial" in msg
    assert "obj_ptr_tpos_proj.weight" in msg and "set sam2.version=2.1" in msg and "missing" not in msg
    v21 = build_sam2(SAM2Config(size="tiny", version="2.1"))
    with pytest.raises(CheckpointError, match=r"3 missing.*set sam2\.version=2\b"):
        load_sam2_weights(v21, sam2_tiny_files["2"])

    # Hiera-T weights for the default Hiera-L model (shapes only: nothing of Hiera-L is allocated)
    tiny = {k: v.shape for k, v in torch.load(sam2_tiny_files["2"], weights_only=True)["model"].items()}
    msg = sam2_state_problems(sam2_shapes(SAM2Config()), tiny)
    assert re.search(r"\d+ missing, e\.g\. \['image_encoder\.trunk\.blocks\.\d+\.", msg)
    assert "of another shape, e.g. image_encoder.neck.convs.0.conv.weight (256, 768, 1, 1) vs the model's " in msg
    assert "set sam2.size=tiny" in msg and "sam2.version" not in msg
    big21 = {k: tuple(v.shape) for k, v in _hydra_sam2("2.1", "l").state_dict().items()}
    msg = sam2_state_problems(sam2_shapes(SAM2Config()), big21)
    assert msg.startswith("3 unexpected") and "sam2.version=2.1" in msg and "sam2.size" not in msg
    assert sam2_state_problems(sam2_shapes(SAM2Config(version="2.1")), big21) is None

    other = tmp_path / "not_sam2.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match="is it a SAM2 checkpoint at all"):
        load_sam2_weights(v1, other)
