"""Forward/backward time and peak memory of one ReVIOSa training step.

Ours: attention maps for the AML recomputed for the special-token rows only, the model on SDPA attention.
Reference (same run): the whole model switched to eager attention, which is what reading attention maps out of
the forward pass needs. Tiny config on CPU always; the 1B config on CUDA when a GPU is present.

    python benchmarks/model_step.py                      # tiny on CPU (+ 1b on CUDA if available)
    python benchmarks/model_step.py --config 1b --device cuda --expressions 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time


def _step(config: str, device: str, attn: str, frames: int, expressions: int, batch: int, steps: int) -> dict:
    import numpy as np
    import torch

    from reviosa.model.batch import build_sample, collate
    from reviosa.model.config import ModelConfig
    from reviosa.model.modeling import ReviosaModel

    torch.manual_seed(0)
    cfg = ModelConfig.from_yaml(config)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = ReviosaModel.from_config(cfg)
    model.lm.set_attn_implementation(attn)
    model = model.to(device=device, dtype=dtype)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    h, w = 360, 640
    samples = []
    for _ in range(batch):
        flags = [i == 0 for i in range(expressions)]
        samples.append(build_sample(cfg, model.tokenizer, rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8),
                                    ["the red circle chases the blue square"] * expressions, flags,
                                    rng.random((expressions, frames, h, w)) > 0.7,
                                    rng.random((expressions, frames, h, w)) > 0.7))
    b = collate(samples, model.tokenizer.pad_token_id).to(device, dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fwd, bwd = [], []
    for i in range(steps + 1):   # the first step warms up kernels and allocators and is not timed
        model.zero_grad(set_to_none=True)
        sync()
        t = time.perf_counter()
        out = model(b)
        sync()
        t1 = time.perf_counter()
        out.loss.backward()
        sync()
        t2 = time.perf_counter()
        if i:
            fwd.append(t1 - t)
            bwd.append(t2 - t1)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": config, "device": device, "attention": attn, "tokens": int(b.input_ids.size(1)),
            "build_s": round(build_s, 2), "forward_s": round(float(np.median(fwd)), 4),
            "backward_s": round(float(np.median(bwd)), 4), "peak_mib": round(peak, 1),
            "peak_kind": "cuda max allocated" if device == "cuda" else "process max RSS",
            "trainable_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2),
            "total_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def _run(args: tuple) -> dict:
    # A fresh process per measurement so the CPU peak-RSS number belongs to that configuration alone.
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_step, args)


def main() -> None:
    """Parse arguments, measure ours and the reference, print a table and JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="tiny | 1b | 4b | path (default: tiny on CPU, 1b on CUDA)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cpu, plus cuda when available)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--expressions", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    import torch

    plans = []
    if a.device in (None, "cpu"):
        plans.append((a.config or "tiny", "cpu"))
    if a.device == "cuda" or (a.device is None and torch.cuda.is_available()):
        plans.append((a.config or "1b", "cuda"))
    rows = []
    for config, device in plans:
        for attn in ("sdpa", "eager"):
            r = _run((config, device, attn, a.frames, a.expressions, a.batch, a.steps))
            r["role"] = "ours" if attn == "sdpa" else "reference"
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'config':7} {'device':6} {'role':9} {'attn':5} {'tokens':>6} {'fwd s':>8} {'bwd s':>8} {'peak MiB':>9}")
    for r in rows:
        print(f"{r['config']:7} {r['device']:6} {r['role']:9} {r['attention']:5} {r['tokens']:6d} "
              f"{r['forward_s']:8.4f} {r['backward_s']:8.4f} {r['peak_mib']:9.1f}")


if __name__ == "__main__":
    main()
