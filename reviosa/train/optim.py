"""The optimizer side of a run: precision, the DeepSpeed JSON config, AdamW and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from reviosa.train.config import TrainConfig


def precision(cfg: TrainConfig, device: torch.device) -> str:
    """fp32 | bf16 | fp16 for this run (``auto`` = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU)."""
    p = cfg.deepspeed.precision
    if p != "auto":
        return p
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def deepspeed_config(cfg: TrainConfig, world_size: int, prec: str) -> dict:
    """The DeepSpeed JSON config derived from the training config."""
    return {
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "bf16": {"enabled": prec == "bf16"},
        "fp16": {"enabled": prec == "fp16", "initial_scale_power": 12},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def lr_lambda(warmup: int, total: int, floor: float, start: float | None = None):
    """Multiplier of the base LR at an optimizer step: linear warm-up (from ``start``, or (step + 1) / warmup when
    None), then cosine to ``floor`` at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup if start is None else start + (1 - start) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def one_cycle_adamw(params, lr: float, steps: int):
    """(AdamW without weight decay, its one-cycle schedule): a 5 % warm-up to ``lr``, then annealed to zero."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.05)


def adamw(params, cfg: TrainConfig, total_steps: int):
    """AdamW over ``params`` with the config's warm-up + cosine schedule: (optimizer, scheduler)."""
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    schedule = lr_lambda(o.warmup(total_steps), total_steps, o.min_lr_ratio, o.warmup_start_factor)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
