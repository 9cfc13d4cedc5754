"""Where a training process sits in the job: torch.distributed through DeepSpeed, with or without a launcher."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from reviosa.data.atomic import atomic_write_text

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Dist:
    """This process's rank, world and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # Launcher variables this process set itself (no torchrun/deepspeed launcher) and their earlier values (None:
    # unset), restored at the end so a later run in the same process (a pipeline step, a test) gets a fresh port.
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        """True on rank 0, which writes the shared files."""
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(device: Literal["auto", "cpu", "cuda"] = "auto", cpu_shm_comm: bool = False) -> Dist:
    """Initialise torch.distributed through DeepSpeed (gloo on CPU, nccl on GPU); works without a launcher."""
    saved: dict[str, str | None] = {}
    if "RANK" not in os.environ:
        # Without a launcher DeepSpeed would try MPI discovery; a one-process world needs only these.
        launcher = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=os.environ.get("MASTER_PORT") or str(_free_port()))
        saved = {k: os.environ.get(k) for k in launcher}
        os.environ.update(launcher)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no GPU is visible")
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if not use_cuda and not cpu_shm_comm:
        # DeepSpeed reads this (cached, editable) table to decide whether to JIT-build its shm all-reduce (~30 s);
        # gloo is enough for small CPU runs.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo", verbose=False)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return Dist(rank, world, local, torch.device("cuda", local) if use_cuda else torch.device("cpu"), saved)


def teardown(dist: Dist | None) -> None:
    """Destroy the process group and give back the launcher variables this process set."""
    if torch.distributed.is_initialized():
        # Without this a multi-process run aborts at exit ("terminate called without an active exception").
        torch.distributed.destroy_process_group()
        # DeepSpeed caches a clone of the world group; a second run in this process would broadcast over the
        # destroyed one. Forget it so the next setup() clones the new world.
        from deepspeed.utils import groups

        groups._WORLD_GROUP = None
    for key, value in (dist.saved_env if dist else {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def reduce_mean(values: dict[str, float], dist: Dist) -> dict[str, float]:
    """The mean of each value over all ranks."""
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=dist.device)
    if dist.world_size > 1:
        torch.distributed.all_reduce(t)
        t /= dist.world_size
    return dict(zip(keys, t.tolist()))


def param_checksum(model) -> str:
    """SHA-256 over the trainable parameters (names and float32 bytes), to compare ranks and runs."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_rank_fingerprint(model, out: Path, dist: Dist, step: int, seen: list[str]) -> None:
    """``ranks/rank-N.json``: the step, trainable-weight checksum and samples seen of each rank."""
    torch.distributed.barrier()
    if dist.main:
        (out / "ranks").mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    atomic_write_text(out / "ranks" / f"rank-{dist.rank}.json",
                      json.dumps({"rank": dist.rank, "world_size": dist.world_size, "step": step,
                                  "checksum": param_checksum(model), "samples": seen}))
