"""ReVIOSa model on the tiny config (CPU): losses and gradients, token logic, AML, save/load, inference, CLI."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.config import ConfigError
from reviosa.data.format import InterRVOSDataset
from reviosa.evaluate.predictions import read_mask_png
from reviosa.model.batch import build_sample, collate, random_training_sample, sample_from_dataset
from reviosa.model.checkpoint import save_pretrained
from reviosa.model.config import ModelConfig
from reviosa.model.errors import CheckpointError
from reviosa.model.inference import key_frame_indices, predict_video
from reviosa.model.losses import attention_bce, patch_masks
from reviosa.model.modeling import ReviosaModel
from reviosa.model.tokenizer import IM_END, IMG_CONTEXT, SEG_ACT, SEG_TAR, answer_text, build_tiny_tokenizer
from tests._splits import make_split

INTERACTION = "the red circle chases the blue square"
PLAIN = "the green star"


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig.from_yaml("tiny")


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return ReviosaModel.from_config(cfg)


def _sample(cfg, tok, rng, has_target, n_frames=4, h=48, w=64):
    frames = rng.integers(0, 255, (n_frames, h, w, 3), dtype=np.uint8)
    act = rng.random((len(has_target), n_frames, h, w)) > 0.6
    tar = rng.random((len(has_target), n_frames, h, w)) > 0.6
    tar[~np.asarray(has_target)] = False
    texts = [INTERACTION if t else PLAIN for t in has_target]
    return build_sample(cfg, tok, frames, texts, list(has_target), act, tar)


def _batch(cfg, model, seed=0, flags=((True, False), (False, False))):
    rng = np.random.default_rng(seed)
    return collate([_sample(cfg, model.tokenizer, rng, f) for f in flags], model.tokenizer.pad_token_id)


def test_forward_backward_all_losses_and_gradient_routing(cfg, model):
    model.zero_grad(set_to_none=True)
    out = model(_batch(cfg, model))
    assert set(out.losses) == {"text", "mask_bce_actor", "mask_dice_actor", "mask_bce_target", "mask_dice_target",
                               "aml"}
    assert all(torch.isfinite(v) and v.item() > 0 for v in out.losses.values())
    low = cfg.sam2.low_res
    assert out.actor_logits.shape == (2, 2, 4, low, low)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}

    def touched(fragment):
        names = [n for n in grads if fragment in n]
        assert names, fragment
        return [n for n in names if grads[n] is not None and grads[n].abs().sum() > 0]

    # lora_B starts at zero, so only it gets a non-zero gradient on the first step; lora_A is still reached
    assert touched("lora_B") and all(grads[n] is not None for n in grads if "lora_A" in n)
    assert touched("trainable_tokens_delta")
    assert touched("multi_modal_projector")
    assert touched("lm_head.modules_to_save")  # the tiny config trains its random lm_head whole
    assert len(touched("projection.")) == 4
    assert touched("sam_mask_decoder.output_upscaling") and touched("sam_mask_decoder.conv_s0")
    frozen = [n for n in grads if n.startswith(("sam.image_encoder", "sam.memory", "sam.sam_prompt_encoder"))
              or "vision_tower" in n or ("language_model" in n and "lora_" not in n and "token" not in n)]
    assert frozen and all(grads[n] is None for n in frozen)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)


def test_interaction_expressions_get_seg_tar_and_a_target_track(cfg, model):
    assert SEG_TAR in answer_text(cfg, True) and SEG_ACT in answer_text(cfg, True)
    assert SEG_ACT in answer_text(cfg, False) and SEG_TAR not in answer_text(cfg, False)
    batch = _batch(cfg, model)
    tar_id = model.token_ids[SEG_TAR]
    assert (batch.input_ids == tar_id).sum(1).tolist() == [1, 0]
    # the supervised labels include both special tokens, so the LM learns to emit [SEG_TAR]
    assert (batch.labels == tar_id).sum().item() == 1
    with torch.no_grad():
        out = model(batch)
    assert out.target_logits[0, 0].abs().sum() > 0
    assert out.target_logits[0, 1].abs().sum() == 0 and out.target_logits[1].abs().sum() == 0


def test_batch_without_interaction_has_zero_target_loss_and_still_trains(cfg, model):
    model.zero_grad(set_to_none=True)
    out = model(_batch(cfg, model, flags=((False,), (False,))))
    assert out.losses["mask_bce_target"].item() == 0 and out.losses["mask_dice_target"].item() == 0
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_mask_only_drops_text_and_aml_from_the_total_but_keeps_every_gradient(cfg, model):
    batch = _batch(cfg, model)
    w = cfg.loss
    with torch.no_grad():
        full = model(batch)
    model.mask_only = True
    try:
        model.zero_grad(set_to_none=True)
        out = model(batch)
        out.loss.backward()
    finally:
        model.mask_only = False
    mask = (w.bce_weight * (out.losses["mask_bce_actor"] + out.losses["mask_bce_target"])
            + w.dice_weight * (out.losses["mask_dice_actor"] + out.losses["mask_dice_target"]))
    assert out.losses["text"] > 0 and out.losses["aml"] > 0  # still computed and logged
    assert torch.allclose(out.loss, mask) and torch.allclose(full.loss, mask + w.text_weight * full.losses["text"]
                                                             + w.aml_weight * full.losses["aml"])
    # ZeRO/DDP need a gradient (zero or not) for every trainable parameter at every step
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.lm.lm_head.modules_to_save.default.weight.grad.abs().sum() == 0  # only the text loss reaches it


@pytest.mark.parametrize("form_weight", [1.0, 8.0])
def test_text_loss_weights_the_token_that_decides_the_answer_form(cfg, model, form_weight):
    batch = _batch(cfg, model)
    saved = model.config
    model.config = cfg.with_overrides([f"loss.form_weight={form_weight}"])
    try:
        with torch.no_grad():
            got = model(batch).losses["text"]
            last = model.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                                  attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids).last_hidden_state
            logp = torch.log_softmax(model.lm.lm_head(last).float(), -1)
    finally:
        model.config = saved
    # reference: walk every answer token; the one read right after [SEG_ACT] says whether [SEG_TAR] follows
    act = model.tokenizer.convert_tokens_to_ids(SEG_ACT)
    total = norm = 0.0
    decisions = []
    for b in range(batch.input_ids.shape[0]):
        ids, labels = batch.input_ids[b].tolist(), batch.labels[b].tolist()
        for i in range(1, len(ids)):
            if labels[i] == -100:
                continue
            w = 1.0
            if ids[i - 1] == act:
                w = form_weight
                decisions.append(ids[i])
            total += w * -float(logp[b, i - 1, labels[i]])
            norm += w
    flags = batch.has_target.flatten().tolist()
    assert len(decisions) == len(flags)
    # one token tells "and [SEG_TAR]" from the end of a single's answer
    assert not {d for d, t in zip(decisions, flags) if t} & {d for d, t in zip(decisions, flags) if not t}
    assert got.item() == pytest.approx(total / norm, rel=1e-5)


def test_mismatched_target_flags_are_rejected(cfg, model):
    batch = _batch(cfg, model)
    batch.has_target = torch.tensor([[False, False], [False, False]])
    with pytest.raises(ValueError, match=r"\[SEG_TAR\]"):
        model(batch)
    batch = _batch(cfg, model)
    batch.input_ids[0][batch.input_ids[0] == model.token_ids[SEG_ACT]] = model.tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"\[SEG_ACT\]"):
        model(batch)


def eager_attentions(model, batch) -> tuple[torch.Tensor, ...]:
    """Every layer's attention probabilities from HF's eager implementation: the independent reference for AML."""
    model.lm.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                                  attention_mask=batch.attention_mask, output_attentions=True,
                                  use_cache=False).attentions
    finally:
        model.lm.set_attn_implementation("sdpa")


def test_attention_mask_loss_equals_direct_eager_computation(cfg, model):
    batch = _batch(cfg, model, seed=3)
    with torch.no_grad():
        ours = model(batch).losses["aml"].item()
    attentions = eager_attentions(model, batch)
    grid = cfg.mllm.grid
    vis = (batch.input_ids == model.token_ids["<IMG_CONTEXT>"])
    terms = []
    for layer, head in cfg.loss.aml_heads:
        att = attentions[layer]
        act_rows, act_gt, tar_rows, tar_gt = [], [], [], []
        for b in range(batch.input_ids.size(0)):
            cols = vis[b].nonzero()[:, 0]
            for e, pos in enumerate((batch.input_ids[b] == model.token_ids[SEG_ACT]).nonzero()[:, 0]):
                act_rows.append(att[b, head, pos, cols])
                act_gt.append(patch_masks(batch.actor_masks[b, e], grid, cfg.loss.aml_patch_rule).flatten())
            for pos in (batch.input_ids[b] == model.token_ids[SEG_TAR]).nonzero()[:, 0]:
                e = int((batch.input_ids[b, :pos] == model.token_ids[SEG_ACT]).sum()) - 1
                tar_rows.append(att[b, head, pos, cols])
                tar_gt.append(patch_masks(batch.target_masks[b, e], grid, cfg.loss.aml_patch_rule).flatten())

        def bce(rows, gts):
            p = torch.stack(rows).clamp(1e-6, 1 - 1e-6)
            g = torch.stack(gts)
            return float(-(g * p.log() + (1 - g) * (1 - p).log()).mean())

        terms.append(bce(act_rows, act_gt) + bce(tar_rows, tar_gt))
    assert ours == pytest.approx(sum(terms) / len(terms), rel=1e-4)


def test_attention_bce_and_patch_masks_on_a_hand_case():
    m = torch.zeros(1, 8, 8)
    m[0, :4, 4:] = 1
    assert patch_masks(m, 2).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    dot = torch.zeros(1, 8, 8)
    dot[0, 5, 2] = 1  # one pixel, not the one nearest sampling reads in its patch
    assert patch_masks(dot, 2).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert patch_masks(dot, 2, "any").tolist() == [[0.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="unknown patch rule"):
        patch_masks(dot, 2, "mean")
    p = torch.tensor([[0.5, 0.25]])
    g = torch.tensor([[1.0, 0.0]])
    assert attention_bce(p.log(), g).item() == pytest.approx((math.log(2) + -math.log(0.75)) / 2, rel=1e-6)


def test_save_then_load_gives_identical_outputs(cfg, model, tmp_path):
    torch.manual_seed(1)
    trained = ReviosaModel.from_config(cfg)
    opt = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.5)
    trained(_batch(cfg, trained)).loss.backward()
    opt.step()
    save_pretrained(trained, tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"config.yaml", "reviosa.safetensors",
                                                               "base.safetensors", "tokenizer"}
    # the same weights saved again give the same bytes: a remade checkpoint can be compared by its hash
    save_pretrained(trained, tmp_path / "again")
    for name in ("reviosa.safetensors", "base.safetensors"):
        assert (tmp_path / "ckpt" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    torch.manual_seed(99)  # a different random init must be fully overwritten by the checkpoint
    loaded = ReviosaModel.from_pretrained(tmp_path / "ckpt")
    batch = _batch(cfg, trained, seed=5)
    trained.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = trained(batch), loaded(batch)
    for k in a.losses:
        assert torch.equal(a.losses[k], b.losses[k]), k
    assert torch.equal(a.actor_logits, b.actor_logits) and torch.equal(a.target_logits, b.target_logits)
    frames = np.random.default_rng(2).integers(0, 255, (6, 40, 56, 3), dtype=np.uint8)
    pa = predict_video(trained, frames, INTERACTION, answer=answer_text(cfg, True))
    pb = predict_video(loaded, frames, INTERACTION, answer=answer_text(cfg, True))
    assert np.array_equal(pa.actor, pb.actor) and np.array_equal(pa.target, pb.target)


def test_loading_a_folder_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not a ReVIOSa checkpoint"):
        ReviosaModel.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        ReviosaModel.from_pretrained(tmp_path / "missing")


def test_from_pretrained_reads_an_s3_uri(cfg, model, tmp_path, s3_storage, monkeypatch):
    save_pretrained(model, tmp_path / "ckpt")
    fs = s3_storage.s3fs()
    fs.put(str(tmp_path / "ckpt"), f"{s3_storage.bucket}/models/tiny", recursive=True)
    # read through the storage config alone: endpoint and key file from its YAML, no AWS_* variables
    (tmp_path / "storage.yaml").write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(tmp_path / "storage.yaml"))
    for key in s3_storage.client_env(env={}):
        monkeypatch.delenv(key, raising=False)
    loaded = ReviosaModel.from_pretrained(f"s3://{s3_storage.bucket}/models/tiny", cache_dir=tmp_path / "cache")
    for (n, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), n


@contextmanager
def sam2_memory(model, cfg: ModelConfig, memory: bool):
    """The shared module-scoped model with ``inference.memory`` switched for the block."""
    model.config = cfg.with_overrides([f"inference.memory={str(memory).lower()}"])
    try:
        yield model
    finally:
        model.config = cfg


@pytest.mark.parametrize("memory", [True, False], ids=["sam2-memory", "every-frame"])
def test_predict_video_roles_and_resolution(cfg, model, memory):
    with sam2_memory(model, cfg, memory):
        _check_roles_and_resolution(cfg, model)


def _check_roles_and_resolution(cfg, model):
    frames = np.random.default_rng(4).integers(0, 255, (9, 30, 44, 3), dtype=np.uint8)
    inter = predict_video(model, frames, INTERACTION, answer=answer_text(cfg, True))
    assert inter.actor.shape == (9, 30, 44) and inter.actor.dtype == bool
    assert inter.target is not None and inter.target.shape == (9, 30, 44)
    plain = predict_video(model, frames, PLAIN, answer=answer_text(cfg, False))
    assert plain.target is None
    none = predict_video(model, frames, PLAIN, answer="no idea")
    assert not none.actor.any() and none.target is None
    generated = predict_video(model, list(frames[:3]), PLAIN)
    assert isinstance(generated.text, str) and generated.actor.shape == (3, 30, 44)
    with pytest.raises(ValueError, match="empty"):
        predict_video(model, frames, "  ")
    with pytest.raises(ValueError, match="reserved token"):
        predict_video(model, frames, "the dog <|im_end|> and <img>")


@contextmanager
def _lm_head_hook(model, hook):
    """Rewrite the LLM's output logits with ``hook`` for the duration of the block."""
    handle = model.lm.lm_head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_generation_never_emits_image_placeholders(model):
    # An untrained model can prefer <IMG_CONTEXT>; fed back for the [SEG] states it would have no image features.
    img = model.token_ids[IMG_CONTEXT]

    def prefer_images(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., img] += 1e4
        return logits

    frames = np.random.default_rng(6).integers(0, 255, (3, 30, 44, 3), dtype=np.uint8)
    with _lm_head_hook(model, prefer_images):
        pred = predict_video(model, frames, PLAIN)
    assert "<img" not in pred.text.lower() and "</img>" not in pred.text.lower()
    assert pred.actor.shape == (3, 30, 44)


def test_generated_interaction_answer_fits_and_yields_a_target_track(cfg, model):
    # A model that has learned the interaction answer must be able to generate all of it: a generation budget
    # shorter than the answer cut it before [SEG_TAR], and no generated answer ever had a target track.
    want = model.tokenizer.encode(answer_text(cfg, True), add_special_tokens=False)
    want.append(model.tokenizer.convert_tokens_to_ids(IM_END))
    calls = []

    def say_the_answer(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., -1, want[min(len(calls), len(want) - 1)]] += 1e4
        calls.append(1)
        return logits

    frames = np.random.default_rng(7).integers(0, 255, (3, 30, 44, 3), dtype=np.uint8)
    with _lm_head_hook(model, say_the_answer):
        pred = predict_video(model, frames, INTERACTION)
    assert SEG_TAR in pred.text and pred.text.endswith(".")
    assert pred.target is not None and pred.target.shape == (3, 30, 44)
    short = cfg.with_overrides([f"inference.max_new_tokens={len(want) - 1}"])
    with pytest.raises(ValueError, match="max_new_tokens.*SEG_TAR"):
        ReviosaModel.from_config(short)


def test_predict_video_without_memory_prompts_every_frame_alone(cfg, model):
    from reviosa.model import mllm as mllm_ops
    from reviosa.model import sam as sam_ops
    from reviosa.model.inference import seg_embeddings
    from reviosa.model.tokenizer import encode_conversation

    frames = np.random.default_rng(5).integers(0, 255, (6, 30, 44, 3), dtype=np.uint8)
    answer = answer_text(cfg, True)
    with sam2_memory(model, cfg, False):
        pred = predict_video(model, frames, INTERACTION, answer=answer)
    keys = key_frame_indices(6, cfg.inference.key_frames)
    prompt, _ = encode_conversation(model.tokenizer, cfg, len(keys), [INTERACTION], None)
    pixels = mllm_ops.preprocess_frames(frames[keys], cfg.mllm.vision.image_size)
    emb = seg_embeddings(model.eval(), prompt + model.tokenizer.encode(answer, add_special_tokens=False), pixels)
    lang = torch.stack([emb[SEG_ACT], emb[SEG_TAR]])
    for i in range(6):
        # Each frame on its own, as a one-frame video prompted on that frame: no other frame can leak in.
        alone = sam_ops.propagate(model.sam, 1, lambda _: sam_ops.preprocess_frames(frames[i][None],
                                                                                    cfg.sam2.image_size),
                                  lang, [0], (30, 44))
        assert np.array_equal(alone[0, 0], pred.actor[i]) and np.array_equal(alone[1, 0], pred.target[i]), i


def test_key_frames():
    assert key_frame_indices(12, 5) == [0, 1, 2, 3, 4]
    assert key_frame_indices(3, 5) == [0, 1, 2]
    assert key_frame_indices(9, 3, "uniform") == [0, 4, 8]


def test_dataset_samples_follow_the_ground_truth(cfg, model, tmp_path):
    ds = make_split(tmp_path / "split")
    video = ds.videos["vid_a"]
    s = sample_from_dataset(cfg, model.tokenizer, ds, video, ["2", "0"], [0, 2])
    assert s.has_target == [True, False]
    assert s.target_masks[1].sum() == 0 and s.target_masks[0].sum() > 0
    assert s.actor_masks.shape == (2, 2, cfg.sam2.low_res, cfg.sam2.low_res)
    rng = np.random.default_rng(0)
    r = random_training_sample(cfg, model.tokenizer, ds, video, rng, n_expressions=2)
    assert r.frame_indices == sorted(r.frame_indices) and len(r.frame_indices) == cfg.train_frames
    assert video.expressions[r.exp_ids[0]].has_target


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="aml_heads"):
        ModelConfig.from_yaml("tiny", ["loss.aml_heads=[[9, 0]]"])
    with pytest.raises(ConfigError, match="no such ModelConfig"):
        ModelConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="train_lm_head needs"):
        ModelConfig.from_yaml("1b", ["lora.train_lm_head=true", "mllm.text.tie_word_embeddings=true"])
    big = ModelConfig.from_yaml("1b")
    assert big.mllm.tokens_per_frame == 256 and big.sam2.low_res == 256


def test_random_init_scale_follows_the_config(cfg):
    def q_std(config):
        torch.manual_seed(0)
        m = ReviosaModel.from_config(config)
        return float(m.language_model.layers[0].self_attn.q_proj.base_layer.weight.std())

    assert cfg.mllm.text.initializer_range == 0.125
    assert q_std(cfg) == pytest.approx(0.125, rel=0.1)
    raw = cfg.model_dump()
    raw["mllm"]["text"]["initializer_range"] = 0.02
    assert q_std(ModelConfig.model_validate(raw)) == pytest.approx(0.02, rel=0.1)
    assert ModelConfig().mllm.text.initializer_range == 0.02  # transformers' default for real-size configs


def test_tiny_tokenizer_is_offline_and_covers_any_text():
    tok = build_tiny_tokenizer()
    text = "the purple hexagon circles the zebra-striped cube!"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_cli_predict_and_select_heads(model, tmp_path):
    ds = make_split(tmp_path / "split")
    save_pretrained(model, tmp_path / "ckpt")
    video = ds.root / "JPEGImages" / "vid_a"
    runner = CliRunner()
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "ckpt"), "--video", str(video),
                              "--expression", INTERACTION, "--out", str(tmp_path / "pred"),
                              "--answer", "Sure, it is [SEG_ACT] and [SEG_TAR]."])
    assert res.exit_code == 0, res.output
    for role in ("actor", "target"):
        files = sorted((tmp_path / "pred" / "vid_a" / "0" / role).glob("*.png"))
        assert [f.stem for f in files] == ds.videos["vid_a"].frames
        assert read_mask_png(files[0]).shape == (24, 32)
    assert (tmp_path / "pred" / "vid_a" / "0" / "overlay.gif").stat().st_size > 0
    res = runner.invoke(app, ["select-heads", "--model", str(tmp_path / "ckpt"), "--data", str(ds.root),
                              "--samples", "2", "--top-k", "2", "--out", str(tmp_path / "heads")])
    assert res.exit_code == 0, res.output
    assert "selected layer" in res.output
    assert (tmp_path / "heads" / "layer_attention.png").stat().st_size > 0
    assert (tmp_path / "heads" / "head_attention.png").stat().st_size > 0
    bad = runner.invoke(app, ["predict", "--model", str(tmp_path / "nope"), "--video", str(video),
                              "--expression", "x"], env={"COLUMNS": "400"})
    assert bad.exit_code != 0 and "no such file or folder" in bad.output
    bad = runner.invoke(app, ["predict", "--model", str(tmp_path / "ckpt"), "--video", str(video),
                              "--expression", "x", "--set", "inference.key_frames=0"], env={"COLUMNS": "400"})
    assert bad.exit_code == 2 and "inference.key_frames" in bad.output  # the checkpoint's config, overridden
    assert isinstance(InterRVOSDataset.load(ds.root), InterRVOSDataset)


def test_sam2_builder_matches_the_packaged_hydra_config():
    import sam2  # noqa: F401 - importing it registers its packaged configs with Hydra
    from hydra import compose
    from hydra.utils import instantiate

    from reviosa.model.config import SAM2Config
    from reviosa.model.sam import build_sam2

    ref = instantiate(compose(config_name="configs/sam2/sam2_hiera_t.yaml").model, _recursive_=True)
    ours = build_sam2(SAM2Config(embed_dim=96, num_heads=1, stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9],
                                 window_spec=[8, 4, 14, 7]))
    # same keys and shapes => official sam2_hiera_*.pt checkpoints load strictly into our builder
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    for flag in ("num_maskmem", "directly_add_no_mem_embed", "use_obj_ptrs_in_encoder", "pred_obj_scores",
                 "multimask_output_for_tracking", "sigmoid_scale_for_mem_enc", "only_obj_ptrs_in_the_past_for_eval"):
        assert getattr(ref, flag) == getattr(ours, flag), flag


class _NotWeights:
    pass


def test_sam2_checkpoint_is_read_weights_only(cfg, tmp_path):
    from reviosa.model.checkpoint import load_sam2_weights
    from reviosa.model.sam import build_sam2

    torch.manual_seed(3)
    src = build_sam2(cfg.sam2)
    torch.save({"model": src.state_dict()}, tmp_path / "sam2_tiny.pt")
    dst = build_sam2(cfg.sam2)
    load_sam2_weights(dst, tmp_path / "sam2_tiny.pt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save({"model": _NotWeights()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_sam2_weights(dst, tmp_path / "evil.pt")


def test_real_format_internvl_folder_loads_and_untied_heads_train(cfg, tmp_path):
    from reviosa.model.mllm import build_mllm

    # As for a real checkpoint: an untied lm_head of which only the new token rows train.
    untied = cfg.with_overrides(["mllm.text.tie_word_embeddings=false", "lora.train_lm_head=false"])
    torch.manual_seed(4)
    hf, tok = build_mllm(untied)
    hf.save_pretrained(tmp_path / "internvl")       # transformers-native folder: config.json + safetensors
    tok.save_pretrained(tmp_path / "internvl")
    real = untied.with_overrides([f"mllm.pretrained={tmp_path / 'internvl'}"])
    model = ReviosaModel.from_config(real)
    ref = hf.state_dict()
    compared = 0
    for name, value in model.lm.state_dict().items():
        key = name.replace(".base_layer", "")
        if key in ref:
            assert torch.equal(value, ref[key]), name
            compared += 1
    assert compared > len(ref) // 2
    model(_batch(real, model)).loss.backward()
    deltas = {n: p.grad for n, p in model.named_parameters() if "trainable_tokens_delta" in n}
    assert any("lm_head" in n for n in deltas) and all(g is not None for g in deltas.values())
