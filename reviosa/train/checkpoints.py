"""Resumable run state on disk: sharded DeepSpeed checkpoints behind an atomic ``latest.json``, and the history."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from reviosa.data.atomic import atomic_write_text
from reviosa.train.distributed import Dist

LATEST = "latest.json"
HISTORY = "history.jsonl"


def latest(ckpt_dir: Path) -> dict | None:
    """``{"tag", "step"}`` of the last committed checkpoint, or None."""
    path = ckpt_dir / LATEST
    return json.loads(path.read_text()) if path.is_file() else None


def save(engine, ckpt_dir: Path, step: int, keep: int, dist: Dist) -> None:
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


def load(engine, ckpt_dir: Path, mark: dict) -> int:
    """Restore engine, optimizer and scheduler from the checkpoint ``mark`` names; its step."""
    path, state = engine.load_checkpoint(str(ckpt_dir), tag=mark["tag"], load_module_strict=False,
                                         load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"{ckpt_dir / mark['tag']}: checkpoint could not be loaded")
    return int(state["step"])


def truncate_history(path: Path, step: int) -> None:
    """Drop history lines after ``step`` (steps redone after a resume are written again)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def append_history(path: Path, record: dict) -> None:
    """Append one step's record as a JSON line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
