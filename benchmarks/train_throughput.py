"""Trainer throughput: step time, samples/s and peak memory of ``reviosa train`` vs a plain PyTorch loop.

Both train the same model on the same synthetic batches for the same number of steps; the plain loop (AdamW
on the trainable parameters, no DeepSpeed, same precision) is the reference for the engine's overhead.

    python benchmarks/train_throughput.py --config tiny --steps 30                 # CPU
    python benchmarks/train_throughput.py --config 1b --steps 30 --batch-size 2    # GPU (bf16, ZeRO-2)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def plain_loop(cfg_name: str, split: Path, steps: int, batch_size: int, warmup: int) -> dict:
    """Reference: the same model and samples trained by a bare AdamW loop."""
    import torch

    from reviosa.data.format import InterRVOSDataset
    from reviosa.train.config import TrainConfig
    from reviosa.train.data import make_loader
    from reviosa.train.optim import precision
    from reviosa.train.recipes.finetune import build_model

    cfg = TrainConfig.from_yaml(cfg_name, [f"data.train={split}"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prec = precision(cfg, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    model = build_model(cfg).to(device)
    from reviosa.train.data import ExpressionClips

    clips = ExpressionClips(InterRVOSDataset.load(split), model.config, model.tokenizer,
                            cfg.data.expressions_per_sample, seed=cfg.seed)
    loader, _ = make_loader(clips, batch_size, 0, 1, cfg.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
    times = []
    it = iter(loader)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        t0 = time.perf_counter()  # data loading counts, as in the trainer's step time
        try:
            batch, _ = next(it)
        except StopIteration:
            it = iter(loader)
            batch, _ = next(it)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(batch.to(device)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[warmup:])
    out = {"step_time_s": step, "samples_per_s": batch_size / step}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    """Run both and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="training config (tiny | 1b | path)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/train_throughput"))
    args = p.parse_args()
    from reviosa.data.synthetic import SyntheticConfig, generate_split

    split = args.out / "data"
    generate_split(split, SyntheticConfig(frames=8, height=128, width=128), 16, seed=0, progress=False)
    run = args.out / "trainer"
    sets = {"data.train": str(split), "data.val": None, "out": str(run), "steps": args.steps,
            "batch_size": args.batch_size, "checkpoint.every": 10**6, "tracking.enabled": False}
    cmd = [sys.executable, "-m", "reviosa.train", "--config", args.config, "--no-progress"]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    subprocess.run(cmd, check=True)
    hist = [json.loads(ln) for ln in (run / "history.jsonl").read_text().splitlines()][args.warmup:]
    ours = {"step_time_s": statistics.median(h["step_time_s"] for h in hist)}
    ours["samples_per_s"] = args.batch_size / ours["step_time_s"]
    if "peak_memory_gib" in hist[-1]:
        ours["peak_memory_gib"] = max(h["peak_memory_gib"] for h in hist)
    ref = plain_loop(args.config, split, args.steps, args.batch_size, args.warmup)
    print(f"config {args.config}, batch {args.batch_size}, median of steps {args.warmup + 1}..{args.steps}")
    print("| loop | step time (s) | samples/s | peak memory (GiB) |\n|---|---|---|---|")
    for name, r in (("reviosa train (DeepSpeed ZeRO-2)", ours), ("plain PyTorch AdamW loop", ref)):
        mem = f"{r['peak_memory_gib']:.2f}" if "peak_memory_gib" in r else "–"
        print(f"| {name} | {r['step_time_s']:.3f} | {r['samples_per_s']:.2f} | {mem} |")


if __name__ == "__main__":
    main()
