"""Fine-tuning ReVIOSa: LoRA on the MLLM, the new token rows, the projection and SAM2's mask decoder, with DeepSpeed.

One process (``reviosa train --config tiny``) or several (``torchrun --nproc_per_node N -m reviosa.train --config
1b``); the lifecycle is ``setup`` → ``train`` → ``save`` → ``cleanup`` (:func:`run` drives it).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from reviosa.data.atomic import atomic_write_text
from reviosa.storage.fetch import is_s3
from reviosa.train import checkpoints
from reviosa.train import distributed as dist_ops
from reviosa.train.config import TrainConfig

#: loss parts summed for the ``seg`` and ``dice`` metrics
_SEG = ("mask_bce_actor", "mask_bce_target")
_DICE = ("mask_dice_actor", "mask_dice_target")


class FinetuneRecipe:
    """ZeRO data-parallel fine-tuning with resumable checkpoints, MLflow tracking and periodic validation.

    Features, each a field of :class:`TrainConfig`:
        - ``model`` built from its config (random or real InternVL/SAM2 weights), or ``init_from`` a checkpoint;
          the ablations of Table 4 are model-config overrides (``reviosa/train/ablations/``);
        - ``steps`` or ``epochs``; AdamW with warm-up and cosine decay; gradient accumulation and clipping;
        - ``deepspeed.precision`` fp32 / bf16 / fp16 and ZeRO stage; ``mask_only_steps``;
        - checkpoints every ``checkpoint.every`` steps, resumed with the same data order (``resume=True``), in
          ``out`` or an ``s3://`` folder every node shares (``checkpoint.dir``); splits may be ``s3://`` prefixes;
        - ``publish``: the final model and summary copied to a folder or ``s3://`` URI at the end;
        - MLflow params, per-step losses, validation scores and overlays, the final model (``tracking``).

    Raises:
        ConfigError: the config is invalid (raised while loading it, before this class).
        DatasetError: a split cannot be loaded.
        CheckpointError: ``init_from`` weights do not fit ``model``.
        RuntimeError: ``device: cuda`` without a GPU, or a checkpoint that cannot be restored.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True):
        self.cfg = cfg
        self.resume = resume
        self.progress = progress
        self.out = Path(cfg.out)
        where = cfg.checkpoint.dir
        # With an s3:// checkpoint folder the local one only stages what this node uploads or downloads.
        self.remote = where if where and is_s3(where) else None
        self.ckpt_dir = Path(where) if where and not self.remote else self.out / "checkpoints"
        self.dist: dist_ops.Dist | None = None
        self.logger = None
        self.step = 0
        self.last: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self.seen: list[str] = []  # this rank's samples since (re)start, for the rank-sync check

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        """Join the process group, build the model, data, optimizer and engine; restore the latest checkpoint."""
        import deepspeed

        from reviosa.data.format import InterRVOSDataset
        from reviosa.train.data import ExpressionClips, make_loader
        from reviosa.train.optim import adamw, deepspeed_config, precision

        cfg = self.cfg
        self.dist = dist_ops.setup(cfg.device, cfg.deepspeed.cpu_shm_comm)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "train_config.yaml", cfg.to_yaml())
        self.model = build_model(cfg)
        train_ds = InterRVOSDataset.load(self._local(cfg.data.train))
        self.clips = ExpressionClips(train_ds, cfg.model, self.model.tokenizer, cfg.data.expressions_per_sample,
                                     cfg.data.augment, cfg.seed, unit=cfg.data.unit)
        self.loader, self.sampler = make_loader(self.clips, cfg.batch_size, self.dist.rank, self.dist.world_size,
                                                cfg.seed)
        self.total_steps = total_steps(cfg, len(self.clips), self.dist.world_size)
        self.precision = precision(cfg, self.dist.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer, scheduler = adamw(trainable, cfg, self.total_steps)
        self.engine, _, _, _ = deepspeed.initialize(model=self.model, optimizer=optimizer, lr_scheduler=scheduler,
                                                    config=deepspeed_config(cfg, self.dist.world_size, self.precision))
        mark = None
        if self.resume:
            mark = checkpoints.latest_remote(self.remote) if self.remote else checkpoints.latest(self.ckpt_dir)
        if self.resume and mark is None and self.dist.main:
            print(f"--resume: no checkpoint in {self.remote or self.ckpt_dir}, starting from step 0")
        if mark is not None:
            if self.remote:
                checkpoints.pull(self.remote, self.ckpt_dir, mark, self.dist)
            self.step = checkpoints.load(self.engine, self.ckpt_dir, mark)
        self.val_ds = InterRVOSDataset.load(self._local(cfg.data.val)) if cfg.data.val else None
        if self.dist.main:
            if self.resume and self.ckpt_dir.is_dir():
                # A crash mid-save leaves a newer, uncommitted folder; the steps after the resume write it afresh.
                for tag in checkpoints.discard_uncommitted(self.ckpt_dir, mark):
                    print(f"--resume: discarded the incomplete checkpoint {self.ckpt_dir / tag}")
            if self.resume and self.remote:
                for tag in checkpoints.discard_uncommitted_remote(self.remote, mark):
                    print(f"--resume: discarded the incomplete checkpoint {self.remote.rstrip('/')}/{tag}")
            checkpoints.truncate_history(self.out / checkpoints.HISTORY, self.step)
            if cfg.tracking.enabled:
                from reviosa.train.tracking import RunLogger

                self.logger = RunLogger(cfg, resume=self.resume)

    # ---------------------------------------------------------------- train
    def train(self) -> None:
        """Optimizer steps from the restored one to ``total_steps``: log, checkpoint and validate on schedule."""
        from tqdm import tqdm

        cfg, dist, engine = self.cfg, self.dist, self.engine
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        per_epoch = len(self.loader)
        micro = self.step * cfg.grad_accum
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and dist.main) or None)
        engine.train()
        t_step = time.perf_counter()
        items: list[str] = []
        while self.step < self.total_steps:
            epoch, offset = divmod(micro, per_epoch)
            self.sampler.set_epoch(epoch)
            self.clips.set_epoch(epoch)
            self.sampler.start = offset * cfg.batch_size
            for batch, ids in self.loader:
                # Per-micro-step seed: point sampling in the mask loss replays identically after a resume.
                torch.manual_seed(cfg.seed * 1_000_003 + micro)
                self.model.mask_only = self.step < cfg.mask_only_steps
                outputs = engine(batch.to(dist.device, dtype))
                engine.backward(outputs.loss)
                engine.step()
                micro += 1
                self.seen.extend(ids)
                items = ids if cfg.grad_accum == 1 or micro % cfg.grad_accum == 1 else items + ids
                parts = {k: float(v.detach()) for k, v in outputs.losses.items()}
                parts["loss"] = float(outputs.loss.detach())
                if micro % cfg.grad_accum:
                    continue
                self.step += 1
                elapsed, t_step = time.perf_counter() - t_step, time.perf_counter()
                self._record(dist_ops.reduce_mean(parts, dist), epoch, elapsed, items, bar)
                if self.step % cfg.checkpoint.every == 0 or self.step == self.total_steps:
                    checkpoints.save(engine, self.ckpt_dir, self.step, cfg.checkpoint.keep, dist, self.remote)
                if self.val_ds is not None and cfg.validation.every and self.step % cfg.validation.every == 0 \
                        and self.step < self.total_steps:
                    self._validate()
                if self.step >= self.total_steps:
                    break
        bar.close()

    def _record(self, last: dict[str, float], epoch: int, elapsed: float, items: list[str], bar) -> None:
        """Rank 0: one history line, MLflow metrics on schedule, a console line every ``log_every`` steps."""
        cfg = self.cfg
        last["seg"] = sum(last.get(k, 0.0) for k in _SEG)
        last["dice"] = sum(last.get(k, 0.0) for k in _DICE)
        self.last = last
        if not self.dist.main:
            return
        samples = cfg.batch_size * cfg.grad_accum * self.dist.world_size
        bar.update(1)
        record = {"step": self.step, "epoch": epoch,
                  **{f"loss_{k}" if k != "loss" else k: v for k, v in last.items()},
                  "lr": self.engine.get_lr()[0], "samples_per_s": samples / max(elapsed, 1e-9), "step_time_s": elapsed}
        if self.dist.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.dist.device) / 2**30
        checkpoints.append_history(self.out / checkpoints.HISTORY, {**record, "items": items})
        if self.logger is not None and self.step % cfg.tracking.log_every == 0:
            self.logger.metrics({k: v for k, v in record.items() if k != "step"}, self.step)
        if self.step % cfg.log_every == 0 or self.step == self.total_steps:
            bar.write(f"step {self.step}/{self.total_steps} loss {last['loss']:.4f} (seg {last['seg']:.4f} dice "
                      f"{last['dice']:.4f} aml {last.get('aml', 0):.4f} text {last.get('text', 0):.4f}) "
                      f"lr {record['lr']:.2e} {record['samples_per_s']:.2f} samples/s")

    def _validate(self) -> None:
        """Rank 0 validates (other ranks wait); metrics and overlays go to MLflow."""
        from reviosa.train.validation import validate

        if self.dist.main:
            cfg = self.cfg
            overlay_dir = self.out / "overlays" / f"step-{self.step:07d}"
            self.val_metrics, _, files = validate(self.engine.module, self.val_ds, cfg.validation.max_videos,
                                                  overlays=cfg.validation.overlays, overlay_dir=overlay_dir,
                                                  teacher_forced=cfg.validation.teacher_forced_answer)
            if self.logger is not None:
                self.logger.metrics({f"val_{k}": v for k, v in self.val_metrics.items()}, self.step)
                self.logger.artifacts(files, f"overlays/step-{self.step:07d}")
            print(f"validation @ {self.step}: " + " ".join(f"{k}={v:.3f}" for k, v in sorted(self.val_metrics.items())))
        torch.distributed.barrier()

    # ---------------------------------------------------------------- save
    def save(self) -> dict:
        """Final validation, ``final/`` (save_pretrained), the logged model and ``summary.json``; the summary."""
        dist_ops.write_rank_fingerprint(self.engine.module, self.out, self.dist, self.step, self.seen)
        if self.val_ds is not None:
            self._validate()
        summary = {"step": self.step, "losses": self.last, "validation": self.val_metrics, "out": str(self.out)}
        if self.dist.main:
            final = self.engine.module.save_pretrained(self.out / "final")
            summary["final"] = str(final)
            if self.logger is not None and self.cfg.tracking.log_model:
                summary["model_uri"] = self.logger.model(final, self.step)
            if self.logger is not None:
                summary["run_id"] = self.logger.run_id
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))
            if self.cfg.publish:
                publish(self.cfg.publish, final, self.out / "summary.json")
        torch.distributed.barrier()
        return summary

    def _local(self, split: str) -> str:
        """A local folder for a split: itself, or for an ``s3://`` prefix the cached copy (once per node)."""
        if not is_s3(split):
            return split
        from reviosa.storage.fetch import fetch

        if self.dist.local_rank == 0:
            fetch(split)
        torch.distributed.barrier()  # the node's copy is complete before the other ranks look it up
        return str(fetch(split))

    # ---------------------------------------------------------------- cleanup
    def cleanup(self, failed: bool = False) -> None:
        """End the MLflow run (FAILED after an error), leave the process group, restore launcher variables."""
        if self.logger is not None:
            self.logger.close("FAILED" if failed else "FINISHED")
            self.logger = None
        dist_ops.teardown(self.dist)


def publish(dest: str, final: Path, summary: Path) -> None:
    """Copy the final model to ``<dest>/final`` and then the summary beside it: the summary marks it complete."""
    if is_s3(dest):
        from reviosa.storage.objects import join, upload

        upload(final, join(dest, "final"))
        upload(summary, join(dest, "summary.json"))
        return
    import shutil

    Path(dest).mkdir(parents=True, exist_ok=True)
    shutil.copytree(final, Path(dest) / "final", dirs_exist_ok=True)
    atomic_write_text(Path(dest) / "summary.json", summary.read_text())


def build_model(cfg: TrainConfig):
    """The model to train, the same on every rank: seeded from ``cfg.model``, with ``init_from``'s weights if set."""
    from reviosa.model.modeling import ReviosaModel

    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        return ReviosaModel.from_pretrained(cfg.init_from, config=cfg.model)
    return ReviosaModel.from_config(cfg.model)


def total_steps(cfg: TrainConfig, items: int, world_size: int) -> int:
    """Optimizer steps of the run: ``steps``, or ``epochs`` passes over the ``items`` of an epoch (expressions or
    videos, ``data.unit``), ``batch_size x grad_accum`` per process and step."""
    if cfg.epochs is None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * items / (cfg.batch_size * cfg.grad_accum * world_size)))


def run(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Set up, train, save and clean up one run; the summary (last losses, validation, paths)."""
    recipe = FinetuneRecipe(cfg, resume=resume, progress=progress)
    failed = True
    try:
        recipe.setup()
        recipe.train()
        summary = recipe.save()
        failed = False
        return summary
    finally:
        recipe.cleanup(failed=failed)


def load_config(config: str | Path, overrides: list[str] = (), ablation: str | None = None) -> TrainConfig:
    """A training config from a shipped name, a path or an ``s3://`` YAML, ``key=value`` overrides, then an optional
    Table-4 row.

    The row comes last so the run is that row whatever else changed (``model=1b`` swaps the whole model first).
    """
    from reviosa.train.ablation import Ablation

    if is_s3(config):  # a multi-node job's pods read the config their launcher resolved and uploaded
        from reviosa.storage.fetch import fetch

        config = fetch(config)

    row = list(Ablation.from_yaml(ablation).overrides) if ablation else []
    return TrainConfig.from_yaml(config, list(overrides) + row)
