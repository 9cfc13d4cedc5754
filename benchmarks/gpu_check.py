"""The GPU check: training and inference speed of ReVIOSa with random weights, and where the AML heads look.

One run prints one JSON object:

- ``train``: for AML on and off, at the paper's per-GPU batch (2 samples x 4 frames x 5 expressions): median step
  time (forward, backward, AdamW step on the trainable parameters), samples/s, peak memory and MFU (FLOPs counted
  by ``torch.utils.flop_counter`` on one step, over the GPU's dense bf16 peak);
- ``inference``: frames/s of ``predict_video`` on a 100-frame 720p video with an interaction answer, so SAM2
  segments actor and target on every frame (the answer is forced: random weights would generate noise);
- ``attention``: the share of ground-truth-positive vision tokens whose attention from ``[SEG_ACT]``/``[SEG_TAR]``
  at the config's AML heads (1b: layer 22, heads 5, 7, 10, 11) is below 1e-6, per head and overall.

The model is built from the config with random weights (nothing is downloaded). ``--dtype`` (bf16 on CUDA, fp32 on
CPU): training casts the model to it, as DeepSpeed's bf16 mode does; inference autocasts float32 weights to it.

    python benchmarks/gpu_check.py                               # 1b on the GPU: the numbers the issue asks for
    python benchmarks/gpu_check.py --device cpu --config tiny    # smoke mode, a few seconds on CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import time

#: dense bf16 peak TFLOP/s per GPU model (vendor data sheets, SXM parts), for MFU
#: (the first name contained in the device name wins, so the PCIe and NVL parts come before the plain name)
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.5, "H100": 989.4, "A100": 312.0,
                    "L40S": 362.1}
EXPRESSIONS = ["the person handing a cup to the woman", "the woman receiving a cup", "the dog chasing the ball",
               "the ball rolling away from the dog", "the man sitting on the bench"]


def _peak_tflops(device, override: float | None) -> float | None:
    import torch

    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _boxes(n: int, t: int, h: int, w: int, shift: int):
    """(n, t, h, w) bool masks: one box per expression that moves a little from frame to frame."""
    import numpy as np

    masks = np.zeros((n, t, h, w), dtype=bool)
    for e in range(n):
        for f in range(t):
            y = (h // 8) * (1 + (e + shift) % 4) + 4 * f
            x = (w // 10) * (1 + (2 * e + shift) % 6) + 6 * f
            masks[e, f, y:y + h // 4, x:x + w // 5] = True
    return masks


def training_batch(model, samples: int, frames: int, expressions: int, height: int, width: int, device, dtype):
    """A collated training batch of random frames, interaction expressions (actor and target) and box masks."""
    import numpy as np

    from reviosa.model.batch import build_sample, collate

    rng = np.random.default_rng(0)
    texts = (EXPRESSIONS * expressions)[:expressions]
    built = [build_sample(model.config, model.tokenizer, rng.integers(0, 255, (frames, height, width, 3), np.uint8),
                          texts, [True] * expressions, _boxes(expressions, frames, height, width, s),
                          _boxes(expressions, frames, height, width, s + 3))
             for s in range(samples)]
    return collate(built, model.tokenizer.pad_token_id).to(device, dtype)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def measure_training(model, batch, aml_heads, device, steps: int, warmup: int, peak_tflops: float | None) -> dict:
    """Median step time, samples/s, peak memory and MFU of ``model`` on ``batch`` with these AML heads."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.config = model.config.model_copy(update={"loss": model.config.loss.model_copy(
        update={"aml_heads": aml_heads})})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")

    terms: set[str] = set()

    def step() -> None:
        out = model(batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        terms.update(out.losses)

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = _peak_gib(device)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    _sync(device)
    flops = counter.get_total_flops()
    step_s = statistics.median(times)
    return {"aml": bool(aml_heads), "step_s": round(step_s, 4),
            "samples_per_s": round(batch.input_ids.size(0) / step_s, 3),
            "peak_memory_gib": round(peak, 2), "flops_per_step": int(flops), "tflops_per_step": round(flops / 1e12, 3),
            "mfu": round(flops / step_s / (peak_tflops * 1e12), 4) if peak_tflops else None,
            "steps_timed": steps, "tokens_per_sample": int(batch.input_ids.size(1)), "loss_terms": sorted(terms)}


def measure_inference(model, frames: int, height: int, width: int, device, repeats: int, dtype) -> dict:
    """Frames/s of ``predict_video`` on a random video, the answer forced to name actor and target."""
    # dtype by autocast over the float32 weights: how SAM2 runs its own video predictor in bf16.
    import contextlib

    import numpy as np
    import torch

    from reviosa.model.inference import predict_video
    from reviosa.model.tokenizer import answer_text

    video = np.random.default_rng(1).integers(0, 255, (frames, height, width, 3), np.uint8)
    answer = answer_text(model.config, True)
    reduced = dtype in (torch.bfloat16, torch.float16)

    def precision():
        return torch.autocast(device.type, dtype=dtype) if reduced else contextlib.nullcontext()

    with precision():
        predict_video(model, video[:min(frames, 4)], EXPRESSIONS[0], answer=answer)  # warm-up: kernels, allocator
    _sync(device)
    times, pred = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        with precision():
            pred = predict_video(model, video, EXPRESSIONS[0], answer=answer)
        _sync(device)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    both = pred.target is not None and pred.actor.shape == pred.target.shape == (frames, height, width)
    return {"frames": frames, "height": height, "width": width, "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds, 2), "actor_and_target": bool(both), "answer": answer}


def measure_attention(model, batch, heads_spec, threshold: float = 1e-6) -> dict:
    """Share of ground-truth-positive vision tokens that the seg tokens attend to with less than ``threshold``."""
    # Actor rows are scored against the actor masks, target rows against the target masks, as the AML trains them.
    import torch

    from reviosa.model.losses import patch_masks

    was_training = model.training
    model.eval()
    cfg = model.config
    with torch.no_grad():
        out = model.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                             attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                             output_hidden_states=True, use_cache=False)
        tokens = model.seg_tokens(batch)
        grid = cfg.mllm.grid
        gt_act = patch_masks(batch.actor_masks, grid, cfg.loss.aml_patch_rule).flatten(2)
        gt_tar = patch_masks(batch.target_masks, grid, cfg.loss.aml_patch_rule).flatten(2)
        gt = torch.cat([gt_act.reshape(-1, gt_act.size(-1)), gt_tar[tokens.tar_b, tokens.tar_e]]) > 0.5
        per_head, low_all, pos_all = {}, 0, 0
        for (layer, head), att in model.seg_attention(out.hidden_states, batch, tokens, heads_spec).items():
            low = int(((att.float() < threshold) & gt).sum())
            pos = int(gt.sum())
            per_head[f"{layer}/{head}"] = round(low / pos, 4) if pos else None
            low_all, pos_all = low_all + low, pos_all + pos
    model.train(was_training)
    return {"threshold": threshold, "heads": [list(map(int, h)) for h in heads_spec], "positive_tokens": pos_all,
            "share_below": round(low_all / pos_all, 4) if pos_all else None, "share_below_per_head": per_head}


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run the three measurements and print them as one JSON object."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="1b", help="model config: tiny | 1b | 4b | path (default 1b)")
    p.add_argument("--device", default="cuda", help="cuda | cpu (default cuda)")
    p.add_argument("--samples", type=int, default=2, help="samples per training batch (paper: 2 per GPU)")
    p.add_argument("--frames", type=int, default=4, help="frames per training sample (paper: 4)")
    p.add_argument("--expressions", type=int, default=5, help="expressions per training sample (paper: 5)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per AML setting")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--video-frames", type=int, default=100, help="frames of the inference video")
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=1, help="timed inference runs (median)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. inference.memory=true (repeatable)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="compute dtype (default: bf16 on CUDA, "
                   "fp32 on CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for MFU (default: from the "
                   "GPU's name; none on CPU)")
    a = p.parse_args(argv)

    import torch

    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --config tiny for the smoke mode")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    cfg = ModelConfig.from_yaml(a.config, a.overrides)
    if cfg.mllm.pretrained or cfg.sam2.checkpoint:
        cfg = cfg.model_copy(update={"mllm": cfg.mllm.model_copy(update={"pretrained": None}),
                                     "sam2": cfg.sam2.model_copy(update={"checkpoint": None})})
    t_start = time.perf_counter()
    torch.manual_seed(0)
    model = ReviosaModel.from_config(cfg, load_base=False).to(device=device)
    build_s = time.perf_counter() - t_start
    heads = copy.deepcopy(cfg.loss.aml_heads)
    peak = _peak_tflops(device, a.peak_tflops)
    errors: list[str] = []

    def guarded(name: str, fn, *args) -> dict:
        # One failing part (an out-of-memory step, say) must not cost the numbers of the others on a lent GPU.
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001
            errors.append(name)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return {"error": f"{type(err).__name__}: {str(err)[:500]}"}
        finally:
            model.config = cfg

    # Inference first, on the float32 weights under autocast; training then casts the model to ``dtype`` as
    # DeepSpeed's bf16 mode does.
    inference = guarded("inference", measure_inference, model, a.video_frames, a.height, a.width, device, a.repeats,
                        dtype)
    if "error" not in inference:
        inference["peak_memory_gib"] = round(_peak_gib(device), 2)
    model.to(dtype)
    batch = training_batch(model, a.samples, a.frames, a.expressions, a.height, a.width, device, dtype)
    train = [guarded(f"train aml={bool(h)}", measure_training, model, batch, h, device, a.steps, a.warmup, peak)
             for h in (heads, [])]
    attention = guarded("attention", measure_attention, model, batch, heads)
    result = {
        "config": a.config, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or "cpu", "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
        "batch": {"samples": a.samples, "frames": a.frames, "expressions": a.expressions},
        "params_m": round(sum(q.numel() for q in model.parameters()) / 1e6, 1),
        "trainable_m": round(sum(q.numel() for q in model.parameters() if q.requires_grad) / 1e6, 1),
        "peak_bf16_tflops": peak, "build_s": round(build_s, 1), "train": train, "inference": inference,
        "attention": attention, "total_s": round(time.perf_counter() - t_start, 1),
        "goals": {"samples_per_s": 10, "mfu": 0.40, "frames_per_s": 30},
        "notes": "random weights, the built-in stand-in tokenizer; training: the model cast to dtype, a plain AdamW "
                 "loop on the trainable parameters (no DeepSpeed), MFU from the FLOPs the step executes; inference: "
                 "float32 weights under autocast to dtype",
        "errors": errors,
    }
    print(json.dumps(result), flush=True)
    if errors:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
