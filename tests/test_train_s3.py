"""Checkpoints on shared storage (``checkpoint.dir`` an ``s3://`` folder, what multi-node TrainJobs use): two CPU
processes (torchrun, gloo) against the local S3 server are killed with SIGKILL after a checkpoint, resumed from S3
in a fresh local folder, and end with the same weights as an uninterrupted two-process run started by the pipeline's
train step (torchrun with ``gpus_per_node=2``), which also publishes its final model to S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from reviosa.data.synthetic import SyntheticConfig, generate_split

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5


@pytest.fixture
def shared(s3_storage, tmp_path, monkeypatch) -> dict:
    """The test bucket as this process's (and its children's) storage config; a small synthetic split."""
    cfg = tmp_path / "storage.yaml"
    cfg.write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(cfg))
    split = tmp_path / "train"
    generate_split(split, SyntheticConfig(frames=8, height=64, width=64), 6, seed=0, split="train", progress=False)
    return {"storage": s3_storage, "split": split, "run": f"s3://{s3_storage.bucket}/runs/t"}


def overrides(split: Path, ckpt: str, **extra) -> list[str]:
    pairs = {"data.train": str(split), "data.val": None, "steps": STEPS, "checkpoint.every": 2, "checkpoint.keep": 2,
             "checkpoint.dir": ckpt, "tracking.enabled": False, "optim.warmup_steps": 2, **extra}
    return [f"{k}={json.dumps(v)}" for k, v in pairs.items()]


def torchrun(split: Path, out: Path, ckpt: str, *extra: str) -> list[str]:
    sets = [a for o in overrides(split, ckpt, out=str(out)) for a in ("--set", o)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
            "reviosa.train", "--config", "tiny", "--no-progress", *sets, *extra]


def history(out: Path) -> list[dict]:
    path = out / "history.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.is_file() else []


def logged_steps(out: Path) -> int:
    """Complete history lines so far (a line being written has no newline yet)."""
    path = out / "history.jsonl"
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "reviosa.safetensors"))


@pytest.mark.slow
def test_two_processes_killed_after_a_checkpoint_resume_from_s3(shared, tmp_path):
    from reviosa.pipelines import steps
    from reviosa.storage.objects import read_text
    from reviosa.train import checkpoints

    fs, run = shared["storage"].s3fs(), shared["run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    # Uninterrupted: the pipeline step on one node with two processes; checkpoints and the final model go to S3.
    ref_ckpt = f"{run}/ref/checkpoints"
    meta = steps.train(str(shared["split"]), "", str(tmp_path / "ref-model"), str(tmp_path / "ref-work"), "tiny",
                       overrides(shared["split"], ref_ckpt, publish=f"{run}/ref"), gpus_per_node=2)
    assert meta["steps"] == STEPS
    assert json.loads(read_text(f"{ref_ckpt}/latest.json")) == {"tag": f"step-{STEPS:07d}", "step": STEPS}
    assert checkpoints.remote_tags(ref_ckpt) == ["step-0000004", f"step-{STEPS:07d}"]  # keep 2, oldest removed
    shards = {k.rsplit("/", 1)[-1] for k in fs.find(f"{ref_ckpt[5:]}/step-{STEPS:07d}")}
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt",
            "mp_rank_00_model_states.pt"} <= shards  # both ranks' shards were uploaded
    assert json.loads(read_text(f"{run}/ref/summary.json"))["step"] == STEPS
    ref_weights = weights(tmp_path / "ref-model")
    published = tmp_path / "published"
    fs.get(f"{run[5:]}/ref/final/reviosa.safetensors", str(published / "reviosa.safetensors"))
    assert published.joinpath("reviosa.safetensors").read_bytes() == \
        (tmp_path / "ref-model" / "reviosa.safetensors").read_bytes()

    # Killed: the ranks and torchrun are frozen as soon as rank 0 logs step 3 (S3 then holds step 2, and step 4's
    # checkpoint is a whole training step away), then get SIGKILL. torchrun starts each rank in a session of its own,
    # so the signals go to every process of the tree, not to torchrun's process group.
    ckpt = f"{run}/killed/checkpoints"
    first = tmp_path / "node-a"
    victim = subprocess.Popen(torchrun(shared["split"], first, ckpt), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and victim.poll() is None and logged_steps(first) < 3:
            time.sleep(0.01)
        assert victim.poll() is None and logged_steps(first) == 3, "training ended or ran on before the kill"
        tree = psutil.Process(victim.pid).children(recursive=True)
        assert len(tree) >= 2  # both ranks
        for proc in [*tree, psutil.Process(victim.pid)]:
            proc.send_signal(signal.SIGSTOP)
        for proc in [*tree, psutil.Process(victim.pid)]:
            proc.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive and victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:  # a failed check above: leave no rank running
            for proc in [*psutil.Process(victim.pid).children(recursive=True), psutil.Process(victim.pid)]:
                proc.kill()
        victim.wait(timeout=30)
    committed = json.loads(read_text(f"{ckpt}/latest.json"))["step"]
    assert 2 <= committed < STEPS
    # A step folder newer than latest.json (an upload cut off by the kill) is never trusted.
    fs.pipe(f"{ckpt[5:]}/step-0000009/mp_rank_00_model_states.pt", b"torn")

    # Resumed on a "new node": an empty local folder, everything comes from S3.
    second = tmp_path / "node-b"
    proc = subprocess.run(torchrun(shared["split"], second, ckpt, "--resume"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"discarded the incomplete checkpoint {ckpt}/step-0000009" in proc.stdout
    assert "step-0000009" not in checkpoints.remote_tags(ckpt)
    got, want = history(second), history(tmp_path / "ref-work")
    assert [h["step"] for h in got] == list(range(committed + 1, STEPS + 1)), proc.stdout[-3000:]
    assert [h["items"] for h in got] == [h["items"] for h in want[committed:]]  # same data order after the resume
    np.testing.assert_allclose([h["loss"] for h in got], [h["loss"] for h in want[committed:]], rtol=1e-5, atol=1e-6)
    a = weights(second / "final")
    assert a.keys() == ref_weights.keys()
    for k in a:
        np.testing.assert_allclose(a[k], ref_weights[k], rtol=1e-5, atol=1e-6, err_msg=k)
