"""The cluster's MLflow entry point, run for real on loopback (sqlite instead of Postgres, the session's S3):
basic auth on every API call, the client account from its Secret, and no secret on any command line."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from reviosa.services.mlflow_server import fill_uri
from reviosa.services.process import free_ports, spawn, wait_http


def _secret(folder: Path, **values: str) -> str:
    folder.mkdir(parents=True)
    for k, v in values.items():
        (folder / k).write_text(v + "\n")  # kubectl create secret --from-file keeps a trailing newline
    return str(folder)


def _status(url: str, auth: tuple[str, str] | None = None, host: str | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode())
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_backend_uri_placeholders_are_filled_url_quoted(tmp_path):
    secret = _secret(tmp_path / "pg", POSTGRES_USER="mlflow", POSTGRES_PASSWORD="p@ss:w/rd%?#", POSTGRES_DB="ml")
    uri = fill_uri("postgresql+psycopg2://{POSTGRES_USER}:{POSTGRES_PASSWORD}@postgres:5432/{POSTGRES_DB}", secret)
    assert uri == "postgresql+psycopg2://mlflow:p%40ss%3Aw%2Frd%25%3F%23@postgres:5432/ml"
    assert fill_uri("sqlite:////x/mlflow.db", None) == "sqlite:////x/mlflow.db"
    with pytest.raises(SystemExit, match="lacks POSTGRES_DB"):
        fill_uri("postgresql://{POSTGRES_DB}", _secret(tmp_path / "empty"))


@pytest.mark.slow
def test_cluster_mlflow_needs_a_user_and_keeps_secrets_off_command_lines(tmp_path, s3_storage, monkeypatch):
    from mlflow import MlflowClient

    s3 = s3_storage.credentials()
    admin = ("admin", "admin-" + "a" * 16)
    client_user = ("pipeline", "client-" + "c" * 16)
    secrets = {
        "s3": _secret(tmp_path / "s3", AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key),
        "auth": _secret(tmp_path / "auth", MLFLOW_ADMIN_USERNAME=admin[0], MLFLOW_ADMIN_PASSWORD=admin[1],
                        MLFLOW_FLASK_SERVER_SECRET_KEY="csrf-" + "k" * 24),
        "client": _secret(tmp_path / "client", MLFLOW_TRACKING_USERNAME=client_user[0],
                          MLFLOW_TRACKING_PASSWORD=client_user[1]),
    }
    # The storage config as the ConfigMap mounts it: no keys in it, they come from the secret folder.
    storage = tmp_path / "storage.yaml"
    storage.write_text(s3_storage.model_copy(update={"credentials_file": None}).to_yaml())
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "reviosa.services.mlflow_server",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage-config", str(storage),
            "--s3-secret-dir", secrets["s3"], "--auth-secret-dir", secrets["auth"],
            "--client-secret-dir", secrets["client"], "--work-dir", str(tmp_path / "work"),
            "--host", "127.0.0.1", "--port", str(port), "--allowed-hosts", f"127.0.0.1:{port}"]
    server = spawn("mlflow", argv, log=tmp_path / "mlflow.log", url=f"http://127.0.0.1:{port}",
                   env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, cwd=tmp_path)
    try:
        wait_http(server, "/health", timeout=180)
        api = server.url + "/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(api) == 401
        assert _status(api, (client_user[0], "wrong-password-123")) == 401
        assert _status(api, client_user) == 200 and _status(api, admin) == 200
        assert _status(api, client_user, host="evil.example.com") == 403

        # The client account works end to end, artifacts included (proxied to S3 with the server's own keys).
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", client_user[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", client_user[1])
        client = MlflowClient(tracking_uri=server.url)
        run = client.create_run(client.create_experiment("auth-check"))
        (tmp_path / "a.json").write_text(json.dumps({"ok": 1}))
        client.log_artifact(run.info.run_id, str(tmp_path / "a.json"))
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["a.json"]
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        with pytest.raises(Exception, match="401|Unauthorized|credentials"):
            MlflowClient(tracking_uri=server.url).search_experiments()

        # No secret on any command line of the server's processes (readable by every user in /proc).
        leader_group = server.pid
        cmdlines = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) == \
                        leader_group:
                    cmdlines.append((proc / "cmdline").read_bytes().decode(errors="replace"))
            except (OSError, ValueError):
                continue
        assert cmdlines and any("mlflow" in c for c in cmdlines)
        for value in (admin[1], client_user[1], s3.secret_key):
            assert not any(value in c for c in cmdlines)
        ini = tmp_path / "work" / "basic_auth.ini"
        assert oct(ini.stat().st_mode)[-3:] == "600" and admin[1] not in ini.read_text()
    finally:
        server.stop(timeout=5)
