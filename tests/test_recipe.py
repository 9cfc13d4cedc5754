"""The paper's training recipe as shipped for 1b/4b, and the pieces that carry it out (sampling, wording, schedule,
trainable tables, AML gradient, target-loss normalisation)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.data.format import InterRVOSDataset
from reviosa.model.config import ModelConfig
from reviosa.model.tokenizer import SEG_ACT, SEG_TAR, answer_text, encode_conversation, question_text
from reviosa.train.config import TrainConfig

HEADS = {"1b": [(22, 5), (22, 7), (22, 10), (22, 11)], "4b": [(33, 6), (33, 12), (33, 13), (33, 14)]}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from reviosa.data.synthetic import SyntheticConfig, generate_split

    out = tmp_path_factory.mktemp("recipe") / "train"
    generate_split(out, SyntheticConfig(frames=6, height=48, width=48), 8, seed=3, split="train", progress=False)
    return out


@pytest.mark.parametrize("size", ["1b", "4b"])
def test_print_config_shows_the_papers_recipe(size):
    res = CliRunner().invoke(app, ["train", "--config", size, "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = TrainConfig.from_dict(yaml.safe_load(res.stdout))
    # data: five expressions per sample, one sample per video, an interaction first
    assert (cfg.data.expressions_per_sample, cfg.data.unit) == (5, "video")
    # schedule: 2 per GPU x accumulation 4, 10 epochs, AdamW 4e-5 / wd 0.05 / betas / clip 1, 5 % warm-up from
    # 1e-5 x lr, cosine to 0, bf16
    assert (cfg.batch_size, cfg.grad_accum, cfg.epochs) == (2, 4, 10)
    o = cfg.optim
    assert (o.lr, o.weight_decay, tuple(o.betas), o.grad_clip) == (4e-5, 0.05, (0.9, 0.999), 1.0)
    assert (o.warmup_ratio, o.warmup_steps, o.warmup_start_factor, o.min_lr_ratio) == (0.05, 0, 1e-5, 0.0)
    assert cfg.deepspeed.precision == "bf16"
    m = cfg.model
    assert (m.lora.r, m.lora.alpha, m.lora.dropout) == (128, 256, 0.05)
    assert m.lora.train_embed_tokens and m.lora.train_lm_head and not m.mllm.text.tie_word_embeddings
    assert (m.loss.bce_weight, m.loss.dice_weight, m.loss.text_weight, m.loss.aml_weight) == (2.0, 0.5, 1.0, 1.0)
    assert m.loss.num_points == 12544 and m.loss.target_normalization == "official"
    assert m.loss.aml_heads == HEADS[size] and m.train_frames == 4
    p = m.prompt
    assert (len(p.questions), len(p.postfixes), len(p.answers_actor), len(p.answers_interaction)) == (16, 7, 5, 5)
    assert len(set(p.questions)) == 16 and len(set(p.postfixes)) == 7
    assert p.inference_question == "Please segment {expression}."
    assert (m.inference.key_frames, m.inference.key_frame_sampling) == (5, "first")


def test_schedule_warms_up_from_the_start_factor_then_decays_to_zero():
    from reviosa.train.optim import lr_lambda

    total, cfg = 1000, TrainConfig.from_yaml("1b").optim
    warm = cfg.warmup(total)
    assert warm == 50
    f = lr_lambda(warm, total, cfg.min_lr_ratio, cfg.warmup_start_factor)
    # mmengine LinearLR(start_factor=1e-5) then CosineAnnealingLR(eta_min=0), converted to iterations
    for step in (0, 10, 49):
        assert f(step) == pytest.approx(1e-5 + (1 - 1e-5) * step / 50)
    for step in (50, 300, 999, 1000):
        assert f(step) == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 50) / 950)), abs=1e-12)
    assert f(1000) == pytest.approx(0.0, abs=1e-12)


def test_one_sample_per_video_with_an_interaction_first(synth):
    from reviosa.train.data import ExpressionClips

    cfg = ModelConfig.from_yaml("tiny")
    ds = InterRVOSDataset.load(synth)
    from reviosa.model.tokenizer import build_tiny_tokenizer

    clips = ExpressionClips(ds, cfg, build_tiny_tokenizer(), expressions_per_sample=5, seed=1, unit="video")
    assert len(clips) == sum(1 for v in ds.videos.values() if v.expressions)
    seen_first = set()
    for epoch in range(3):
        clips.set_epoch(epoch)
        for i in range(len(clips)):
            vid, exp_ids, _ = clips.draw(i)
            video = ds.videos[vid]
            assert len(exp_ids) == 5
            roles = {e for e in video.expressions if video.expressions[e].has_target}
            if roles:
                assert exp_ids[0] in roles
                seen_first.add((vid, exp_ids[0]))
            if len(video.expressions) > 5:
                assert len(set(exp_ids)) == 5  # no expression twice when the video has enough
            else:
                assert set(exp_ids) == set(video.expressions)  # all of them, some again
    assert any(len({e for v, e in seen_first if v == vid}) > 1 for vid, _ in seen_first)  # the first one varies


def test_training_draws_the_official_kinds_of_wording_and_inference_asks_one_question():
    cfg = ModelConfig.from_yaml("1b")
    p = cfg.prompt
    rng = np.random.default_rng(0)
    questions = {question_text(cfg, "The man throwing a ball.", rng) for _ in range(400)}
    allowed = {q.format(expression="the man throwing a ball") + f for q in p.questions for f in p.postfixes}
    assert questions <= allowed and len(questions) > 50
    assert question_text(cfg, "The man throwing a ball.", inference=True) == "Please segment the man throwing a ball."
    assert question_text(cfg, "Who throws?", rng) == "who throws?"  # a question is asked as it is
    answers = {answer_text(cfg, True, rng) for _ in range(200)}
    assert answers == set(p.answers_interaction)
    assert all(a.count(SEG_ACT) == 1 and a.count(SEG_TAR) == 1 for a in answers)
    assert {answer_text(cfg, False, rng) for _ in range(200)} == set(p.answers_actor)


def test_wording_without_choices_keeps_the_tiny_chat_exactly():
    from reviosa.model.tokenizer import build_tiny_tokenizer

    cfg = ModelConfig.from_yaml("tiny")
    tok = build_tiny_tokenizer()
    from reviosa.model.tokenizer import add_seg_tokens

    add_seg_tokens(tok)
    drawn = encode_conversation(tok, cfg, 1, ["the red circle"], ["Sure, it is [SEG_ACT]."],
                                rng=np.random.default_rng(5))
    fixed = encode_conversation(tok, cfg, 1, ["the red circle"], ["Sure, it is [SEG_ACT]."])
    assert drawn == fixed
    # training and inference ask the same question in the tiny config
    assert question_text(cfg, "the red circle") == question_text(cfg, "the red circle", inference=True)


def test_whole_embedding_tables_train_save_and_reload(tmp_path):
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.shared_token import seg_rows

    cfg = ModelConfig.from_yaml("tiny", ["lora.train_embed_tokens=true", "shared_seg_token=true"])
    torch.manual_seed(0)
    model = ReviosaModel.from_config(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    vocab = len(model.tokenizer)
    emb = [n for n in trainable if "embed_tokens" in n]
    head = [n for n in trainable if "lm_head" in n]
    assert emb and head
    assert dict(model.named_parameters())[emb[0]].shape[0] == vocab  # every row, not the new tokens' only
    act, tar = seg_rows(model)
    assert torch.equal(act, tar)  # the shared-token ablation ties rows of the whole table too
    with torch.no_grad():
        dict(model.named_parameters())[emb[0]][5].add_(1.0)
    loaded = ReviosaModel.from_pretrained(model.save_pretrained(tmp_path / "ckpt"))
    for name, p in model.named_parameters():
        assert torch.equal(p, dict(loaded.named_parameters())[name]), name


def test_aml_keeps_its_gradient_for_a_tiny_positive_probability():
    from reviosa.model.losses import attention_bce

    logits = torch.tensor([[0.0, 0.0, 0.0, math.log(1e-9 * 3 / (1 - 1e-9))]], requires_grad=True)
    log_p = torch.log_softmax(logits, dim=-1)
    assert log_p[0, 3].exp().item() == pytest.approx(1e-9, rel=1e-3)
    gt = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    attention_bce(log_p, gt).backward()
    assert logits.grad[0, 3] < -0.2  # raising the positive patch's logit lowers the loss
    # the same loss with p clamped at 1e-6 (as before): the positive term's gradient is gone, what is left comes
    # from the other patches' terms through the softmax, 1e-9 times smaller
    clamped = torch.tensor([[0.0, 0.0, 0.0, math.log(1e-9 * 3 / (1 - 1e-9))]], requires_grad=True)
    p = torch.softmax(clamped, dim=-1).clamp(1e-6, 1 - 1e-6)
    (-(gt * p.log() + (1 - gt) * (1 - p).log()).mean()).backward()
    assert abs(clamped.grad[0, 3]) < 1e-8
    # and the value is plain BCE on probabilities where no clamp is needed
    probs = torch.softmax(torch.tensor([[1.0, 2.0, 0.5, -1.0]]), dim=-1)
    want = torch.nn.functional.binary_cross_entropy(probs, gt)
    assert attention_bce(probs.log(), gt).item() == pytest.approx(want.item(), rel=1e-6)


def test_official_target_normalisation_scales_by_the_share_of_target_items(synth):
    from reviosa.model.batch import collate, sample_from_dataset
    from reviosa.model.modeling import ReviosaModel

    ds = InterRVOSDataset.load(synth)
    video = next(v for v in ds.videos.values() if any(e.has_target for e in v.expressions.values())
                 and any(not e.has_target for e in v.expressions.values()))
    inter = next(e for e in video.expressions if video.expressions[e].has_target)
    plain = next(e for e in video.expressions if not video.expressions[e].has_target)
    losses = {}
    for rule in ("per_target", "official"):
        cfg = ModelConfig.from_yaml("tiny", [f"loss.target_normalization={rule}", "loss.num_points=0"])
        torch.manual_seed(0)
        model = ReviosaModel.from_config(cfg)
        sample = sample_from_dataset(cfg, model.tokenizer, ds, video, [inter, plain], [0, 1, 2, 3])
        with torch.no_grad():
            losses[rule] = model(collate([sample], model.tokenizer.pad_token_id)).losses
    share = 1 / 2  # one of two expressions has a target, on every frame
    for key in ("mask_bce_target", "mask_dice_target"):
        assert losses["official"][key].item() == pytest.approx(share * losses["per_target"][key].item(), rel=1e-5)
    assert losses["official"]["mask_bce_actor"].item() == pytest.approx(losses["per_target"]["mask_bce_actor"].item())
