"""The DeepSpeed training loop: ZeRO data parallelism, resumable checkpoints, MLflow, periodic validation.

Single process (``reviosa train --config cfg.yaml``) or several (``torchrun --nproc_per_node N -m
reviosa.train --config cfg.yaml``, or the ``deepspeed`` launcher). Only LoRA, the new token rows, the MLLM
projector, the projection and SAM2's mask decoder train; the vision towers stay frozen.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reviosa.data.atomic import atomic_write_text
from reviosa.train.config import TrainConfig

LATEST = "latest.json"
HISTORY = "history.jsonl"
#: loss parts summed for the ``seg`` and ``dice`` metrics
_SEG = ("mask_bce_actor", "mask_bce_target")
_DICE = ("mask_dice_actor", "mask_dice_target")


@dataclass
class Dist:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # Launcher variables this process set itself (no torchrun/deepspeed launcher) and their earlier values (None:
    # unset), restored at the end so a later run in the same process (a pipeline step, a test) gets a fresh port.
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed(cfg: TrainConfig) -> Dist:
    """Initialise torch.distributed through DeepSpeed (gloo on CPU, nccl on GPU); works without a launcher."""
    saved: dict[str, str | None] = {}
    if "RANK" not in os.environ:
        # Without a launcher DeepSpeed would try MPI discovery; a one-process world needs only these.
        launcher = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=os.environ["MASTER_PORT"] if "MASTER_PORT" in os.environ
                        else str(_free_port()))
        saved = {k: os.environ.get(k) for k in launcher}
        os.environ.update(launcher)
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no GPU is visible")
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if not use_cuda and not cfg.deepspeed.cpu_shm_comm:
        # DeepSpeed reads this (cached, editable) table to decide whether to JIT-build its shm all-reduce.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo", verbose=False)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return Dist(rank, world, local, torch.device("cuda", local) if use_cuda else torch.device("cpu"), saved)


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


def lr_lambda(cfg: TrainConfig):
    """Multiplier of the base LR at an optimizer step: linear warm-up, then cosine to ``min_lr_ratio``."""
    warm, total, floor = cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_model(cfg: TrainConfig):
    """The model to train, the same on every rank (seeded init, or ``init_from`` a checkpoint).

    ``model_overrides`` apply to an ``init_from`` checkpoint's own config, so a fine-tune can change e.g. the loss.
    """
    from reviosa.model.checkpoint import build_model as build
    from reviosa.model.checkpoint import from_pretrained

    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        model = from_pretrained(cfg.init_from, overrides=cfg.model_overrides)
    else:
        model = build(cfg.model_config_obj())
    if cfg.single_seg_token:
        from reviosa.train.ablation import tie_seg_tokens

        tie_seg_tokens(model)
    return model


def _latest(ckpt_dir: Path) -> dict | None:
    path = ckpt_dir / LATEST
    return json.loads(path.read_text()) if path.is_file() else None


def save_checkpoint(engine, ckpt_dir: Path, step: int, keep: int, dist: Dist) -> None:
    """Every rank writes its shard into ``step-N/``; then rank 0 points ``latest.json`` at it (atomic rename)."""
    tag = f"step-{step:07d}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step}, save_latest=False,
                           exclude_frozen_parameters=True)
    torch.distributed.barrier()
    if dist.main:
        atomic_write_text(ckpt_dir / LATEST, json.dumps({"tag": tag, "step": step}))
        tags = sorted(p.name for p in ckpt_dir.glob("step-*") if p.is_dir())
        for old in tags[:-keep]:
            if old != tag:
                shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    torch.distributed.barrier()


def _reduce_mean(values: dict[str, float], device: torch.device, world: int) -> dict[str, float]:
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    if world > 1:
        torch.distributed.all_reduce(t)
        t /= world
    return dict(zip(keys, t.tolist()))


def _history_truncate(path: Path, step: int) -> None:
    """Drop history lines after ``step`` (steps redone after a resume are written again)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the final summary (last losses, validation metrics, paths)."""
    import deepspeed
    from tqdm import tqdm

    from reviosa.data.format import InterRVOSDataset
    from reviosa.train.data import ExpressionClips, make_loader

    dist = setup_distributed(cfg)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    logger = None
    try:
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "train_config.yaml", cfg.to_yaml())
        model = build_model(cfg)
        mcfg = model.config
        train_ds = InterRVOSDataset.load(cfg.data.train)
        clips = ExpressionClips(train_ds, mcfg, model.tokenizer, cfg.data.expressions_per_sample, cfg.data.augment,
                                cfg.seed)
        loader, sampler = make_loader(clips, cfg.batch_size, dist.rank, dist.world_size, cfg.seed)
        per_epoch = len(loader)

        prec = precision(cfg, dist.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                      weight_decay=cfg.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=deepspeed_config(cfg, dist.world_size, prec))
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)

        step = 0
        latest = _latest(ckpt_dir) if resume else None
        if resume and latest is None and dist.main:
            print(f"--resume: no checkpoint in {ckpt_dir}, starting from step 0")
        if latest is not None:
            path, state = engine.load_checkpoint(str(ckpt_dir), tag=latest["tag"], load_module_strict=False,
                                                 load_optimizer_states=True, load_lr_scheduler_states=True)
            if path is None:
                raise RuntimeError(f"{ckpt_dir / latest['tag']}: checkpoint could not be loaded")
            step = int(state["step"])
        if dist.main:
            _history_truncate(out / HISTORY, step)
            if cfg.tracking.enabled:
                from reviosa.train.tracking import RunLogger

                logger = RunLogger(cfg, resume=resume, model_config=model.config)

        val_ds = InterRVOSDataset.load(cfg.data.val) if cfg.data.val else None
        micro = step * cfg.grad_accum
        last: dict[str, float] = {}
        val_metrics: dict[str, float] = {}
        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step",
                   disable=not (progress and dist.main) or None)
        engine.train()
        t_step = time.perf_counter()
        items: list[str] = []
        seen: list[str] = []  # this rank's samples since (re)start, for the rank-sync check
        while step < cfg.steps:
            epoch, offset = divmod(micro, per_epoch)
            sampler.set_epoch(epoch)
            clips.set_epoch(epoch)
            sampler.start = offset * cfg.batch_size
            for batch, ids in loader:
                # Per-micro-step seed: point sampling in the mask loss replays identically after a resume.
                torch.manual_seed(cfg.seed * 1_000_003 + micro)
                model.mask_only = step < cfg.mask_only_steps
                outputs = engine(batch.to(dist.device, dtype))
                engine.backward(outputs.loss)
                engine.step()
                micro += 1
                seen.extend(ids)
                items = ids if micro % cfg.grad_accum == 1 or cfg.grad_accum == 1 else items + ids
                parts = {k: float(v.detach()) for k, v in outputs.losses.items()}
                parts["loss"] = float(outputs.loss.detach())
                if micro % cfg.grad_accum:
                    continue
                step += 1
                elapsed = time.perf_counter() - t_step
                t_step = time.perf_counter()
                last = _reduce_mean(parts, dist.device, dist.world_size)
                last["seg"] = sum(last.get(k, 0.0) for k in _SEG)
                last["dice"] = sum(last.get(k, 0.0) for k in _DICE)
                samples = cfg.batch_size * cfg.grad_accum * dist.world_size
                if dist.main:
                    bar.update(1)
                    record = {"step": step, "epoch": epoch, **{f"loss_{k}" if k != "loss" else k: v
                                                              for k, v in last.items()},
                              "lr": engine.get_lr()[0], "samples_per_s": samples / max(elapsed, 1e-9),
                              "step_time_s": elapsed}
                    if dist.device.type == "cuda":
                        record["peak_memory_gib"] = torch.cuda.max_memory_allocated(dist.device) / 2**30
                    with open(out / HISTORY, "a") as f:
                        f.write(json.dumps({**record, "items": items}) + "\n")
                    if logger is not None and step % cfg.tracking.log_every == 0:
                        logger.metrics({k: v for k, v in record.items() if k not in ("step",)}, step)
                    if step % cfg.log_every == 0 or step == cfg.steps:
                        bar.write(f"step {step}/{cfg.steps} loss {last['loss']:.4f} (seg {last['seg']:.4f} dice "
                                  f"{last['dice']:.4f} aml {last.get('aml', 0):.4f} text {last.get('text', 0):.4f}) "
                                  f"lr {record['lr']:.2e} {record['samples_per_s']:.2f} samples/s")
                if step % cfg.checkpoint.every == 0 or step == cfg.steps:
                    save_checkpoint(engine, ckpt_dir, step, cfg.checkpoint.keep, dist)
                if val_ds is not None and cfg.validation.every and step % cfg.validation.every == 0 \
                        and step < cfg.steps:
                    val_metrics = _validate(engine.module, val_ds, cfg, dist, logger, step, out)
                if step >= cfg.steps:
                    break
        bar.close()
        _write_rank_fingerprint(engine.module, out, dist, step, seen)
        if val_ds is not None:
            val_metrics = _validate(engine.module, val_ds, cfg, dist, logger, step, out)
        summary = {"step": step, "losses": last, "validation": val_metrics, "out": str(out)}
        if dist.main:
            final = engine.module.save_pretrained(out / "final")
            summary["final"] = str(final)
            if logger is not None and cfg.tracking.log_model:
                summary["model_uri"] = logger.model(final)
            if logger is not None:
                summary["run_id"] = logger.run_id
            atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
        torch.distributed.barrier()
        return summary
    except BaseException:
        if logger is not None:
            logger.close("FAILED")
            logger = None
        raise
    finally:
        if logger is not None:
            logger.close()
        if torch.distributed.is_initialized():
            # Without this a multi-process run aborts at exit ("terminate called without an active exception").
            torch.distributed.destroy_process_group()
        for key, value in dist.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def param_checksum(model) -> str:
    """SHA-256 over the trainable parameters (names and float32 bytes), to compare ranks and runs."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _write_rank_fingerprint(model, out: Path, dist: Dist, step: int, seen: list[str]) -> None:
    """``ranks/rank-N.json``: the step, trainable-weight checksum and samples seen of each rank."""
    torch.distributed.barrier()
    if dist.main:
        (out / "ranks").mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    atomic_write_text(out / "ranks" / f"rank-{dist.rank}.json",
                      json.dumps({"rank": dist.rank, "world_size": dist.world_size, "step": step,
                                  "checksum": param_checksum(model), "samples": seen}))


def _validate(model, val_ds, cfg: TrainConfig, dist: Dist, logger, step: int, out: Path) -> dict[str, float]:
    """Rank 0 validates (other ranks wait); metrics and overlays go to MLflow."""
    from reviosa.train.validation import validate

    metrics: dict[str, float] = {}
    if dist.main:
        overlay_dir = out / "overlays" / f"step-{step:07d}"
        metrics, _, files = validate(model, val_ds, cfg.validation.max_videos, overlays=cfg.validation.overlays,
                                     overlay_dir=overlay_dir, teacher_forced=cfg.validation.teacher_forced_answer)
        if logger is not None:
            logger.metrics({f"val_{k}": v for k, v in metrics.items()}, step)
            logger.artifacts(files, f"overlays/step-{step:07d}")
        print(f"validation @ {step}: " + " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))
    torch.distributed.barrier()
    return metrics
