"""Resumable run state on disk: sharded DeepSpeed checkpoints behind an atomic ``latest.json``, and the history.

A crash (SIGKILL, node loss, full disk) may stop a run at any byte. ``latest.json`` only ever names a checkpoint
whose files and folder entries are on disk (fsynced before the rename that commits it), so a resume starts from
the last complete checkpoint; folders written after it are discarded, and a torn last history line is dropped.

With ``checkpoint.dir`` an ``s3://`` URI (shared by every node of a multi-node job) the local folder is a staging
area: each node uploads the shards it wrote, and only once every node has finished does rank 0 write ``latest.json``
to the store. A resume reads that ``latest.json`` and every node downloads the step it names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
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


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file below ``path``, then every folder bottom-up, so the whole tree survives a power loss."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def commit(ckpt_dir: Path, tag: str, step: int) -> None:
    """Point ``latest.json`` at the finished checkpoint ``tag``; only after its files are durable."""
    fsync_tree(ckpt_dir / tag)
    fsync_dir(ckpt_dir)  # the entry of step-N/ itself
    atomic_write_text(ckpt_dir / LATEST, json.dumps({"tag": tag, "step": step}))
    fsync_dir(ckpt_dir)  # the rename that commits it


def save(engine, ckpt_dir: Path, step: int, keep: int, dist: Dist, remote: str | None = None) -> None:
    """Every rank writes its shard into ``step-N/`` and syncs it; then rank 0 commits it in ``latest.json``.

    With ``remote`` (an ``s3://`` folder) the step is uploaded there and committed in the store instead.
    """
    tag = f"step-{step:07d}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step}, save_latest=False,
                           exclude_frozen_parameters=True)
    torch.distributed.barrier()  # every shard is written before anyone walks the folder
    if remote is not None:
        _save_remote(ckpt_dir, tag, step, keep, dist, remote)
        return
    # Every rank flushes the folder (rank 0 in commit()): on a shared file system one node's fsync does not reach
    # another node's cache.
    if not dist.main:
        fsync_tree(ckpt_dir / tag)
    torch.distributed.barrier()
    if dist.main:
        commit(ckpt_dir, tag, step)
        tags = sorted(p.name for p in ckpt_dir.glob("step-*") if p.is_dir())
        for old in tags[:-keep]:
            if old != tag:
                shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    torch.distributed.barrier()


def _save_remote(ckpt_dir: Path, tag: str, step: int, keep: int, dist: Dist, remote: str) -> None:
    from reviosa.storage.objects import join, upload, write_text

    # One process per node sends what that node's ranks wrote (nodes do not share the local folder).
    if dist.local_rank == 0:
        upload(ckpt_dir / tag, join(remote, tag))
    torch.distributed.barrier()  # every node's shards are in the store
    if dist.main:
        write_text(join(remote, LATEST), json.dumps({"tag": tag, "step": step}))
        for old in remote_tags(remote)[:-keep]:
            if old != tag:
                _remove_remote(remote, old)
    if dist.local_rank == 0:
        for path in ckpt_dir.glob("step-*"):  # the store holds the history; one staged step per node is enough
            if path.is_dir() and path.name != tag:
                shutil.rmtree(path, ignore_errors=True)
    torch.distributed.barrier()


def _remove_remote(remote: str, tag: str) -> None:
    from reviosa.storage.objects import join, remove

    remove(join(remote, tag))


def remote_tags(remote: str) -> list[str]:
    """The ``step-N`` folders under an ``s3://`` checkpoint folder, oldest first."""
    from reviosa.storage.objects import folders

    return [t for t in folders(remote) if re.fullmatch(r"step-\d+", t)]


def latest_remote(remote: str) -> dict | None:
    """``{"tag", "step"}`` of the last checkpoint committed in an ``s3://`` folder, or None."""
    from reviosa.storage.objects import join, read_text

    text = read_text(join(remote, LATEST))
    return json.loads(text) if text is not None else None


def pull(remote: str, ckpt_dir: Path, mark: dict, dist: Dist) -> None:
    """Download the committed step ``mark`` from ``remote`` into ``ckpt_dir`` (once per node), for :func:`load`."""
    from reviosa.storage.fetch import download
    from reviosa.storage.objects import join

    if dist.local_rank == 0:
        local = ckpt_dir / mark["tag"]
        shutil.rmtree(local, ignore_errors=True)  # a half-staged copy from an earlier attempt on this node
        download(join(remote, mark["tag"]), local)
    torch.distributed.barrier()


def discard_uncommitted_remote(remote: str, mark: dict | None) -> list[str]:
    """Remove step folders newer than the committed ``mark`` from an ``s3://`` folder (an interrupted upload)."""
    committed = mark["step"] if mark else -1
    gone = [t for t in remote_tags(remote) if int(t.split("-")[1]) > committed]
    for tag in gone:
        _remove_remote(remote, tag)
    return gone


def load(engine, ckpt_dir: Path, mark: dict) -> int:
    """Restore engine, optimizer and scheduler from the checkpoint ``mark`` names; its step."""
    path, state = engine.load_checkpoint(str(ckpt_dir), tag=mark["tag"], load_module_strict=False,
                                         load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise RuntimeError(f"{ckpt_dir / mark['tag']}: checkpoint could not be loaded")
    return int(state["step"])


def discard_uncommitted(ckpt_dir: Path, mark: dict | None) -> list[str]:
    """Remove checkpoint folders newer than the committed ``mark`` (a crash mid-save leaves them); their names."""
    committed = mark["step"] if mark else -1
    gone = []
    for path in sorted(ckpt_dir.glob("step-*")):
        m = re.fullmatch(r"step-(\d+)", path.name)
        if m and path.is_dir() and int(m.group(1)) > committed:
            shutil.rmtree(path)
            gone.append(path.name)
    return gone


def read_history(path: Path) -> list[dict]:
    """The history records; a torn last line (the process died mid-write) is dropped with a warning."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: corrupt history line (not the last one, so not a torn write)")
            warnings.warn(f"{path}:{i + 1}: dropping a torn last line ({len(line)} bytes), left by an "
                          "interrupted write", stacklevel=2)
    return records


def truncate_history(path: Path, step: int) -> None:
    """Drop history lines after ``step`` (steps redone after a resume are written again) and any torn last line."""
    if path.is_file():
        keep = [r for r in read_history(path) if r["step"] <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def append_history(path: Path, record: dict) -> None:
    """Append one step's record as a JSON line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
