"""Crash the S3 server in the middle of ``reviosa data snapshot``'s push, restart it, rerun: nothing is lost."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reviosa.services.seaweed import start_seaweed, stop_seaweed
from reviosa.storage.config import S3Credentials, StorageConfig
from reviosa.storage.dataversions import DataRepo, get_version

N_FILES, FILE_BYTES = 48, 1 << 20  # 48 MiB: the push is still running when the kill lands


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_kill_s3_during_push_then_resume_loses_nothing(git_repo: Path, tmp_path: Path) -> None:
    creds = S3Credentials("resume" + secrets.token_hex(4), secrets.token_urlsafe(18))
    cred_file = tmp_path / "creds.json"
    cred_file.write_text(json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}))
    server = start_seaweed(tmp_path / "s3", creds, buckets=["resume-test"])
    try:
        cfg = StorageConfig(endpoint=server.url, bucket="resume-test", credentials_file=str(cred_file))
        (tmp_path / "storage.yaml").write_text(cfg.to_yaml())
        repo = DataRepo(git_repo, cfg)
        repo.init()
        rng = __import__("numpy").random.default_rng(7)
        for i in range(N_FILES):
            path = git_repo / "data" / f"shard_{i // 8}" / f"{i:03d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.bytes(FILE_BYTES))
        expected = _files(git_repo / "data")

        argv = [sys.executable, "-c", "from reviosa.cli import main; main()", "data", "snapshot", "-m", "big",
                "--no-validate", "--repo", str(git_repo), "--config", str(tmp_path / "storage.yaml")]
        # One attempt per request (botocore; s3fs still retries 5x) so the failing push gives up in seconds.
        env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
        push = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        client = cfg.minio()
        deadline = time.monotonic() + 120
        uploaded = 0
        while push.poll() is None and time.monotonic() < deadline:
            uploaded = sum(1 for _ in client.list_objects(cfg.bucket, prefix="dvc/", recursive=True))
            if uploaded >= 3:
                break
            time.sleep(0.05)
        server.kill()  # SIGKILL: no graceful flush, like a node dying mid-upload
        out, err = push.communicate(timeout=300)
        assert push.returncode != 0, f"push finished before the kill; raise N_FILES/FILE_BYTES\n{out}"
        assert 0 < uploaded < N_FILES, uploaded
        assert "push failed" in err and "Traceback" not in err, err
        assert repo.tags() == [], "a tag was created for data the remote does not fully hold"

        server = start_seaweed(tmp_path / "s3", creds, ports=server.ports)
        ver = repo.snapshot("big")  # the same command again resumes the push
        assert (ver.tag, ver.nfiles) == ("data-v1", N_FILES)
        keys = {o.object_name for o in client.list_objects(cfg.bucket, prefix="dvc/", recursive=True)}
        assert len(keys) == N_FILES + 1  # every file plus the directory manifest

        # Everything readable back from S3 alone: fresh cache, fresh download, byte for byte.
        shutil.rmtree(git_repo / ".dvc" / "cache")
        got = get_version(str(git_repo), "data-v1", tmp_path / "fresh", cfg)
        assert _files(got) == expected
        shutil.rmtree(git_repo / "data")
        repo.rollback("data-v1")
        assert _files(git_repo / "data") == expected
    finally:
        stop_seaweed(server)
