"""The prepared GPU check (``benchmarks/gpu_check.py``) in its CPU smoke mode, and its attention count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_cpu_smoke_mode_prints_one_json_with_every_measurement():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--config",
                           "tiny", "--steps", "1", "--warmup", "1", "--video-frames", "6"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.strip()]  # one JSON, nothing else on stdout
    out = json.loads(line)
    assert out["errors"] == [] and out["batch"] == {"samples": 2, "frames": 4, "expressions": 5}
    on, off = out["train"]
    assert (on["aml"], off["aml"]) == (True, False)
    # AML off really drops the term and the attention it reads, so the step does less work.
    assert "aml" in on["loss_terms"] and "aml" not in off["loss_terms"]
    assert on["flops_per_step"] > off["flops_per_step"] > 0
    for row in (on, off):
        assert row["samples_per_s"] == pytest.approx(2 / row["step_s"], rel=1e-2)
        assert row["mfu"] is None  # no peak FLOP/s for a CPU
    inf = out["inference"]
    assert inf["actor_and_target"] and (inf["frames"], inf["height"], inf["width"]) == (6, 720, 1280)
    assert inf["frames_per_s"] == pytest.approx(6 / inf["seconds"], rel=1e-2)
    att = out["attention"]
    assert att["heads"] == [[2, 1], [2, 3]] and set(att["share_below_per_head"]) == {"2/1", "2/3"}
    assert att["positive_tokens"] > 0 and 0.0 <= att["share_below"] <= 1.0


def test_attention_share_counts_every_positive_token_of_both_roles():
    """Masks covering whole frames make every vision token positive for every actor and target row, so the count
    is known without the model: rows x frames x grid²; thresholds 0 and 2 bound any attention probability."""
    from reviosa.model.batch import build_sample, collate
    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel

    torch.manual_seed(0)
    cfg = ModelConfig.from_yaml("tiny")
    model = ReviosaModel.from_config(cfg, load_base=False)
    t, e, b = 4, 3, 2
    full = np.ones((e, t, 64, 64), dtype=bool)
    rng = np.random.default_rng(0)
    batch = collate([build_sample(cfg, model.tokenizer, rng.integers(0, 255, (t, 64, 64, 3), np.uint8),
                                  ["the red circle chasing the square"] * e, [True] * e, full, full)
                     for _ in range(b)], model.tokenizer.pad_token_id)
    rows = 2 * b * e  # an actor and a target row per expression
    heads = cfg.loss.aml_heads
    none = gpu_check.measure_attention(model, batch, heads, threshold=0.0)
    every = gpu_check.measure_attention(model, batch, heads, threshold=2.0)
    assert none["positive_tokens"] == every["positive_tokens"] == len(heads) * rows * t * cfg.mllm.grid ** 2
    assert none["share_below"] == 0.0 and every["share_below"] == 1.0
    assert model.training  # left as it was found


def test_a_bf16_model_trains_and_segments_a_video_with_memory():
    """What DeepSpeed's bf16 mode does to the model (every weight cast to bf16) and the check's inference (float32
    weights under bf16 autocast, SAM2 memory on): both run, and the bf16 loss matches the float32 one."""
    from reviosa.model.batch import build_sample, collate
    from reviosa.model.config import ModelConfig
    from reviosa.model.inference import predict_video
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.tokenizer import answer_text

    torch.manual_seed(0)
    cfg = ModelConfig.from_yaml("tiny", ["inference.memory=true"])
    model = ReviosaModel.from_config(cfg, load_base=False)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (6, 64, 64, 3), np.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = predict_video(model, video, "the red circle chasing the square", answer=answer_text(cfg, True))
    assert pred.actor.shape == pred.target.shape == (6, 64, 64)
    masks = np.zeros((2, 4, 64, 64), dtype=bool)
    masks[:, :, 8:40, 8:40] = True
    batch = collate([build_sample(cfg, model.tokenizer, video[:4], ["the red circle chasing the square"] * 2,
                                  [True, True], masks, masks[:, :, ::-1])], model.tokenizer.pad_token_id)
    model.eval()  # no dropout: both passes see the same function
    with torch.no_grad():
        want = model(batch).losses
    model.to(torch.bfloat16)
    out = model(batch.to("cpu", torch.bfloat16))
    out.loss.backward()
    assert set(out.losses) == set(want)
    for key, value in want.items():
        assert float(out.losses[key].detach()) == pytest.approx(float(value), rel=0.1, abs=0.05), key
    decoder = [p for n, p in model.named_parameters() if n.startswith("sam.sam_mask_decoder.") and p.requires_grad]
    assert decoder and all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in decoder)
