"""Storage configuration, the S3 client checks and the ``reviosa services`` stack, against a real S3 server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reviosa.config import ConfigError
from reviosa.services.process import free_ports
from reviosa.storage.client import check_access
from reviosa.storage.config import StorageConfig, load_storage_config, local_config_path
from reviosa.storage.errors import StorageAuthError, StorageCredentialsError, StorageUnavailableError


def test_config_precedence_path_then_env_then_local_stack_then_shipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REVIOSA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("REVIOSA_STORAGE_CONFIG", raising=False)
    assert load_storage_config() == StorageConfig.from_yaml("default") == StorageConfig()
    local = local_config_path()
    local.parent.mkdir(parents=True)
    local.write_text("endpoint: http://127.0.0.1:9\nbucket: local-stack\n")
    assert load_storage_config().bucket == "local-stack"
    path = tmp_path / "storage.yaml"
    path.write_text("endpoint: https://minio.mlops.svc:9000\nbucket: datasets\n")
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(path))
    cfg = load_storage_config()
    assert (cfg.endpoint, cfg.bucket, cfg.secure, cfg.host) == ("https://minio.mlops.svc:9000", "datasets",
                                                                True, "minio.mlops.svc:9000")
    assert cfg.dvc_url == "s3://datasets/dvc"
    assert load_storage_config(local).bucket == "local-stack"  # an explicit path wins over the variable
    # Fields are never taken from per-field environment variables any more.
    monkeypatch.setenv("REVIOSA_S3_BUCKET", "other-bucket")
    monkeypatch.setenv("REVIOSA_S3_ENDPOINT", "http://elsewhere:1")
    assert load_storage_config() == cfg


def test_every_shipped_storage_config_loads() -> None:
    assert StorageConfig.shipped() == ["default"]
    for name in StorageConfig.shipped():
        cfg = StorageConfig.from_yaml(name)
        assert StorageConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    assert StorageConfig.from_yaml("default") == StorageConfig()


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"endpoint: .*http://host:port"):
        StorageConfig.from_dict({"endpoint": "127.0.0.1:9000"})
    with pytest.raises(ConfigError, match="endpoint: .*must not contain a path"):
        StorageConfig.from_yaml("default", ["endpoint=http://x:1/prefix"])
    with pytest.raises(ConfigError, match="bucket: .*not a valid S3 bucket name"):
        StorageConfig.from_dict({"bucket": "Bad_Bucket"})
    path = tmp_path / "s.yaml"
    path.write_text("endpoint: http://x:1\nacces_key: oops\n")
    with pytest.raises(ConfigError, match=f"{path}.*acces_key"):
        load_storage_config(path)
    path.write_text("storage:\n  endpoint: http://x:1\n")  # the old wrapper section is gone, and says so
    with pytest.raises(ConfigError, match="storage"):
        load_storage_config(path)


def test_credentials_env_then_secret_dir_and_never_in_yaml(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text("from-secret\n")
    (secret / "AWS_SECRET_ACCESS_KEY").write_text("s3cr3t-value\n")
    cfg = StorageConfig(secret_dir=str(secret))
    creds = cfg.credentials(env={})
    assert (creds.access_key, creds.secret_key) == ("from-secret", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(creds) and "s3cr3t-value" not in cfg.to_yaml()
    env_creds = cfg.credentials(env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert (env_creds.access_key, env_creds.source) == ("a", "env")
    with pytest.raises(StorageCredentialsError, match="AWS_ACCESS_KEY_ID"):
        StorageConfig().credentials(env={})


def test_minio_and_s3fs_round_trip(s3_storage: StorageConfig) -> None:
    check_access(s3_storage)
    payload = os.urandom(6 << 20)  # > 5 MiB so the SDK uses a multipart upload
    client = s3_storage.minio()
    client.put_object(s3_storage.bucket, "a/blob.bin", io.BytesIO(payload), len(payload), part_size=5 << 20)
    fs = s3_storage.s3fs()
    assert fs.cat(f"{s3_storage.bucket}/a/blob.bin") == payload
    fs.pipe(f"{s3_storage.bucket}/b/small.txt", b"hello")
    assert client.get_object(s3_storage.bucket, "b/small.txt").read() == b"hello"


def test_wrong_credentials_give_a_clear_error(s3_storage: StorageConfig) -> None:
    wrong = {"AWS_ACCESS_KEY_ID": s3_storage.credentials().access_key, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in wrong.items():
            mp.setenv(k, v)
        with pytest.raises(StorageAuthError, match="rejected the credentials.*AWS_SECRET_ACCESS_KEY"):
            check_access(s3_storage)
        mp.setenv("AWS_ACCESS_KEY_ID", "nobody-knows-me")
        with pytest.raises(StorageAuthError, match="rejected the credentials"):
            check_access(s3_storage)


def test_unreachable_endpoint_fails_fast(s3_storage: StorageConfig) -> None:
    (port,) = free_ports(1)
    cfg = StorageConfig(endpoint=f"http://127.0.0.1:{port}", bucket="x-bucket",
                        credentials_file=s3_storage.credentials_file)
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        check_access(cfg)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from reviosa.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_services_cli_up_status_env_down(tmp_path: Path) -> None:
    env = {"REVIOSA_STATE_DIR": str(tmp_path / "state")}
    try:
        up = _cli("services", "up", "--s3-port", "0", "--no-mlflow", env=env)
        assert up.returncode == 0, up.stderr
        status = _cli("services", "status", env=env)
        assert status.returncode == 0 and " up " in status.stdout, status.stdout
        exports = dict(line.removeprefix("export ").split("=", 1) for line in
                       _cli("services", "env", env=env).stdout.splitlines())
        # The printed config and generated keys reach the server.
        cfg = load_storage_config(exports["REVIOSA_STORAGE_CONFIG"])
        check_access(cfg)
        assert oct((tmp_path / "state/services/credentials.json").stat().st_mode)[-3:] == "600"
        assert _cli("services", "up", "--s3-port", "0", "--no-mlflow", env=env).stdout == up.stdout  # idempotent
    finally:
        down = _cli("services", "down", env=env)
    assert "s3" in down.stdout
    after = _cli("services", "status", env=env)
    assert after.returncode == 1
    with pytest.raises(StorageUnavailableError):
        check_access(cfg)
