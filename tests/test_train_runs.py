"""Training end to end: two CPU processes stay in sync, SIGKILL + --resume equals an uninterrupted run (one process,
two processes, gradient accumulation across an epoch boundary, a crash mid-checkpoint or mid-history-line), and
MLflow receives params, per-step losses, validation metrics, overlays and the final model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from reviosa.data.synthetic import SyntheticConfig, generate_split
from reviosa.train import checkpoints
from reviosa.train.distributed import Dist

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    cfg = SyntheticConfig(frames=8, height=64, width=64)
    generate_split(root / "train", cfg, 6, seed=0, split="train", progress=False)
    generate_split(root / "val", cfg, 2, seed=1, split="val", progress=False)  # seed 1: with an interaction
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


def torchrun(splits, out: Path, *extra: str, **over) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "reviosa.train", *args(splits, out, **over),
            *extra]


def kill_after_checkpoint(argv: list[str], out: Path, steps_done: int) -> int:
    """Start ``argv`` in its own process group, SIGKILL the whole group once a checkpoint is committed and
    ``steps_done`` steps are in the history (a node dying); the committed step."""
    victim = subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    latest = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and victim.poll() is None:
            if latest.is_file() and (out / "history.jsonl").is_file() and len(history(out)) >= steps_done:
                break
            time.sleep(0.05)
        assert victim.poll() is None, "training finished before it could be killed"
    finally:
        os.killpg(victim.pid, signal.SIGKILL)  # torchrun and both ranks at once
        victim.wait(timeout=30)
    return json.loads(latest.read_text())["step"]


@pytest.mark.slow
def test_two_processes_stay_in_sync_and_resume_after_a_kill(splits, tmp_path):
    ref = tmp_path / "ddp"
    proc = subprocess.run(torchrun(splits, ref), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((ref / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["step"] == 6 for r in ranks)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]           # ZeRO-2 kept the replicas identical
    assert len(ranks[0]["samples"]) == len(ranks[1]["samples"]) == 6 * 2
    assert not set(ranks[0]["samples"]) & set(ranks[1]["samples"])  # each rank trained on its own shard
    assert len(list((ref / "checkpoints" / "step-0000006").glob("zero_pp_rank_*_optim_states.pt"))) == 2

    out = tmp_path / "killed"
    step_at_kill = kill_after_checkpoint(torchrun(splits, out), out, 3)
    assert 2 <= step_at_kill < 6 and not (out / "final").exists()
    proc = subprocess.run(torchrun(splits, out, "--resume"), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = history(out), history(ref)
    assert [h["step"] for h in got] == list(range(1, 7))
    assert [h["items"] for h in got] == [h["items"] for h in want]
    np.testing.assert_allclose([h["loss"] for h in got], [h["loss"] for h in want], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([h["lr"] for h in got], [h["lr"] for h in want], rtol=1e-9)
    resumed = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert resumed[0]["checksum"] == resumed[1]["checksum"]
    a, b = final_weights(out), final_weights(ref)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


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
    assert {"config", "overlays"} <= names
    # Splits in a temporary folder are no DVC version: the run says so rather than naming one.
    assert run.data.tags["reviosa.data.version"] == "untracked"
    assert "no DVC-tracked folder" in run.data.tags["reviosa.data.note"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["train (untracked)", "val (untracked)"]
    # The final model is the run's one logged model, loadable as an MLflow pyfunc without unpickling anything.
    import mlflow.artifacts
    import mlflow.pyfunc

    (output,) = run.outputs.model_outputs
    assert output.step == 3
    where = client.get_logged_model(output.model_id).artifact_location
    files = mlflow.artifacts.download_artifacts(artifact_uri=where, dst_path=str(tmp_path / "logged"),
                                                tracking_uri=mlflow_server.tracking_uri)
    model = mlflow.pyfunc.load_model(files)
    assert model.metadata.get_input_schema().input_names() == ["frames"]
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    masks = model.predict(frames, params={"expression": "the red circle"})
    assert masks["actor"].shape == masks["target"].shape == (2, 64, 64) and isinstance(masks["text"], str)
    overlays = client.list_artifacts(run_id, "overlays/step-0000002")
    assert overlays and all(a.path.endswith(".gif") for a in overlays)


def test_history_drops_a_torn_last_line_and_refuses_other_corruption(tmp_path):
    path = tmp_path / "history.jsonl"
    good = [{"step": i, "loss": 1.0 / i} for i in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"step": 4, "lo')  # died mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        checkpoints.truncate_history(path, 2)  # what --resume does first
    assert history(path.parent) == good[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file reads without a warning
        assert checkpoints.read_history(path) == good[:2]
    path.write_text(json.dumps(good[0]) + "\n{garbage\n" + json.dumps(good[2]) + "\n")
    with pytest.raises(ValueError, match=":2: corrupt history line"):
        checkpoints.truncate_history(path, 3)


class _FakeEngine:
    """Writes DeepSpeed's checkpoint layout (one subfolder, two shards) without a model."""

    def save_checkpoint(self, save_dir, tag, **_):
        folder = Path(save_dir) / tag
        (folder / "zero").mkdir(parents=True)
        (folder / "mp_rank_00_model_states.pt").write_bytes(b"m" * 100)
        (folder / "zero" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o" * 100)


def test_checkpoint_files_and_folders_are_durable_before_latest_json_names_them(tmp_path, monkeypatch):
    import torch

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: None)
    checkpoints.save(_FakeEngine(), ckpt, 2, keep=2, dist=Dist(0, 1, 0, torch.device("cpu")))
    commit = events.index(("replace", str(ckpt / checkpoints.LATEST)))
    synced = {path for kind, path in events[:commit] if kind == "fsync"}
    folder = ckpt / "step-0000002"
    must = {str(p) for p in folder.rglob("*")} | {str(folder), str(ckpt)}
    assert must <= synced, sorted(must - synced)
    assert ("fsync", str(ckpt)) in events[commit + 1:]  # the rename itself is made durable
    assert checkpoints.latest(ckpt) == {"tag": "step-0000002", "step": 2}


def _crash_state(out: Path, committed: int) -> None:
    """Turn a finished run folder into one that died while writing checkpoint ``committed + 1``.

    ``latest.json`` names ``committed``; the next folder is half-written (truncated shards, one missing), later ones
    and the final model are gone, and the history ends with the next step's line cut short.
    """
    ckpt = out / "checkpoints"
    checkpoints.atomic_write_text(ckpt / checkpoints.LATEST,
                                  json.dumps({"tag": f"step-{committed:07d}", "step": committed}))
    partial = ckpt / f"step-{committed + 1:07d}"
    shards = sorted(p for p in partial.rglob("*") if p.is_file())
    assert len(shards) >= 2, shards
    for shard in shards[:-1]:
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    shards[-1].unlink()
    for later in ckpt.glob("step-*"):
        if int(later.name.split("-")[1]) > committed + 1:
            shutil.rmtree(later)
    shutil.rmtree(out / "final")
    (out / "summary.json").unlink()
    lines = (out / "history.jsonl").read_text().splitlines()
    (out / "history.jsonl").write_text("".join(ln + "\n" for ln in lines[: committed + 1])
                                       + lines[committed + 1][:40])


@pytest.mark.slow
def test_resume_after_a_crash_mid_checkpoint_with_grad_accum_across_an_epoch_boundary(splits, tmp_path):
    # One item per video: 6 items, batch 2, so an epoch is 3 micro-steps and, with grad_accum 2, optimizer step 2
    # takes its micro-steps from epochs 0 and 1. Checkpoints after every step, none deleted.
    over = {"data.unit": "video", "grad_accum": 2, "steps": 4, "checkpoint.every": 1, "checkpoint.keep": 10}
    ref = tmp_path / "ref"
    proc = subprocess.run([sys.executable, "-m", "reviosa.train", *args(splits, ref, **over)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = history(ref)
    assert [h["epoch"] for h in want] == [0, 1, 1, 2]  # the boundary falls inside steps 2 and 4
    # Resume points: before the step that spans the boundary (step 1), and mid-epoch just after it (step 2).
    for committed in (1, 2):
        out = tmp_path / f"crashed-at-{committed}"
        shutil.copytree(ref, out)
        _crash_state(out, committed)
        proc = subprocess.run([sys.executable, "-m", "reviosa.train", *args(splits, out, **over), "--resume"],
                              cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "torn last line" in proc.stderr and "discarded the incomplete checkpoint" in proc.stdout
        got = history(out)
        assert [h["step"] for h in got] == [1, 2, 3, 4]
        assert [h["items"] for h in got] == [h["items"] for h in want]
        np.testing.assert_allclose([h["loss"] for h in got], [h["loss"] for h in want], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([h["lr"] for h in got], [h["lr"] for h in want], rtol=1e-9)
        a, b = final_weights(out), final_weights(ref)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=f"resumed at {committed}: {k}")
