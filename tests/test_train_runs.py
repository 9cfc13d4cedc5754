"""Training end to end: two CPU processes stay in sync, SIGKILL + --resume equals an uninterrupted run,
MLflow receives params, per-step losses, validation metrics, overlays and the final model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reviosa.data.synthetic import SyntheticConfig, generate_split

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    cfg = SyntheticConfig(frames=8, height=64, width=64)
    generate_split(root / "train", cfg, 6, seed=0, split="train", progress=False)
    generate_split(root / "val", cfg, 2, seed=0, split="val", progress=False)
    return {"train": root / "train", "val": root / "val"}


def args(splits, out: Path, **over) -> list[str]:
    cfg = {"data.train": str(splits["train"]), "data.val": None, "out": str(out), "steps": 6, "checkpoint.every": 2,
           "tracking.enabled": False, "optim.warmup_steps": 2}
    cfg.update(over)
    pairs = [a for k, v in cfg.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return ["--config", "tiny", "--no-progress", *pairs]


def env(extra: dict | None = None) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(extra or {})}


def history(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "history.jsonl").read_text().splitlines()]


def final_weights(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / "final" / "reviosa.safetensors"))


@pytest.mark.slow
def test_two_processes_stay_in_sync(splits, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "reviosa.train",
                           *args(splits, out, steps=3)], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["step"] == 3 for r in ranks)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]           # ZeRO-2 kept the replicas identical
    assert len(ranks[0]["samples"]) == len(ranks[1]["samples"]) == 3 * 2
    assert not set(ranks[0]["samples"]) & set(ranks[1]["samples"])  # each rank trained on its own shard
    assert sorted((out / "checkpoints" / "step-0000002").glob("zero_pp_rank_*_optim_states.pt")) != []
    assert len(list((out / "checkpoints" / "step-0000002").glob("zero_pp_rank_*"))) == 2


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(splits, tmp_path):
    ref = tmp_path / "ref"
    proc = subprocess.run([sys.executable, "-m", "reviosa.train", *args(splits, ref)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "killed"
    victim = subprocess.Popen([sys.executable, "-m", "reviosa.train", *args(splits, out)], cwd=ROOT, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    # Kill as soon as the step-2 checkpoint is committed and a later step has been trained on top of it.
    while time.monotonic() < deadline and victim.poll() is None:
        if latest.is_file() and (out / "history.jsonl").is_file() and len(history(out)) >= 3:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "training finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    step_at_kill = json.loads(latest.read_text())["step"]
    assert 2 <= step_at_kill < 6 and not (out / "final").exists()

    proc = subprocess.run([sys.executable, "-m", "reviosa.train", *args(splits, out), "--resume"], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = history(out), history(ref)
    assert [h["step"] for h in got] == list(range(1, 7))
    assert [h["items"] for h in got] == [h["items"] for h in want]   # same data order after the resume
    np.testing.assert_allclose([h["loss"] for h in got], [h["loss"] for h in want], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([h["lr"] for h in got], [h["lr"] for h in want], rtol=1e-9)
    a, b = final_weights(out), final_weights(ref)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_mlflow_tracking(splits, tmp_path, mlflow_server, s3_server):
    out = tmp_path / "tracked"
    proc = subprocess.run([sys.executable, "-m", "reviosa.train",
                           *args(splits, out, steps=3, **{"tracking.enabled": True, "data.val": str(splits["val"]),
                                                         "validation.every": 2, "validation.overlays": 1,
                                                         "tracking.run_name": "tiny-test",
                                                         "tracking.system_metrics_interval": 0.5})],
                          cwd=ROOT, env=env({"MLFLOW_TRACKING_URI": mlflow_server.tracking_uri, **s3_server.env}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    client = mlflow_server.client()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-test"
    assert run.data.params["steps"] == "3" and run.data.params["deepspeed.zero_stage"] == "2"
    assert run.data.tags["reviosa.run.kind"] == "train"
    for key in ("loss", "loss_seg", "loss_dice", "loss_aml", "loss_text", "lr", "samples_per_s"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3], key
    for key in ("val_actor_JF", "val_target_JF", "val_rvos_JF", "val_actor_J", "val_rvos_F"):
        values = client.get_metric_history(run_id, key)
        assert [m.step for m in values] == [2, 3] and all(0 <= m.value <= 1 for m in values), key
    assert any(k.startswith("system/") for k in run.data.metrics)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config", "overlays", "model"} <= names
    model_files = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, "model")}
    assert {"config.yaml", "reviosa.safetensors"} <= model_files
    overlays = client.list_artifacts(run_id, "overlays/step-0000002")
    assert overlays and all(a.path.endswith(".gif") for a in overlays)
