"""Storage configuration, the S3 client checks and the ``reviosa services`` stack, against a real S3 server."""

from __future__ import annotations

import io
import json
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


def test_services_never_trust_or_signal_a_pid_that_is_not_theirs(tmp_path: Path) -> None:
    """A stale state.json whose pids now belong to another process: reported down, left alone, started fresh."""
    env = {"REVIOSA_STATE_DIR": str(tmp_path / "state")}
    state = tmp_path / "state" / "services" / "state.json"
    state.parent.mkdir(parents=True)
    # Its own session, like the servers: killpg(pid) reaches it, which is what `down` used to do.
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        start = int(Path(f"/proc/{bystander.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        argv = Path(f"/proc/{bystander.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        url = f"http://127.0.0.1:{free_ports(1)[0]}"
        # A record from before identities were kept: the pid alone proves nothing.
        legacy = {"name": "s3", "pid": bystander.pid, "url": url, "log": str(tmp_path / "weed.log"), "ports": {},
                  "extra": {}}
        # Same pid and command line, another start time: the recorded process is gone and its pid reused.
        reused = {**legacy, "start_time": start - 100, "cmdline": argv, "boot_id": boot_id}
        for stale in ({"s3": legacy}, {"s3": reused, "mlflow": {**reused, "name": "mlflow"}}):
            state.write_text(json.dumps(stale))
            status = _cli("services", "status", env=env)
            assert status.returncode == 1 and status.stdout.count(" down ") == len(stale), status.stdout
            down = _cli("services", "down", env=env)
            assert "nothing was running" in down.stdout, down.stdout
            assert bystander.poll() is None, "`services down` signalled a process it did not start"

        state.write_text(json.dumps(stale))
        try:
            up = _cli("services", "up", "--s3-port", "0", "--no-mlflow", env=env)
            assert up.returncode == 0, up.stderr
            fresh = json.loads(state.read_text())["s3"]
            assert fresh["pid"] != bystander.pid and fresh["cmdline"][1] == "mini" and fresh["start_time"]
            assert _cli("services", "status", env=env).stdout.startswith("s3      up ")
        finally:
            down = _cli("services", "down", env=env)
        assert down.stdout.strip() == "stopped: s3", down.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _listening_ports(leader: int) -> dict[int, str]:
    """Listening TCP ports (with their address) of every process in the process group led by ``leader``."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != leader:
                continue
            fds = list((proc / "fd").iterdir())
        except (OSError, ValueError):
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                addr, port = cols[1].rsplit(":", 1)
                ports[int(port, 16)] = addr
    return ports


def _tls_exchange(port: int, cert: tuple[str, str] | None = None, ca: str | None = None) -> bytes:
    """Open TLS (client certificate ``cert`` if given), send a minimal HTTP/1.1 or HTTP/2 request, return the reply."""
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if cert:
        ctx.load_cert_chain(*cert)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as conn:
        if conn.selected_alpn_protocol() == "h2":  # gRPC ports speak only HTTP/2: preface + empty SETTINGS
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        else:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return conn.recv(64)


def _plain_http(port: int, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> int | None:
    """Status of a plain HTTP request, or None when the port does not answer HTTP at all."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_local_stack_ports_refuse_anonymous_clients(s3_server, mlflow_server) -> None:
    """Every port of `weed mini` but S3 needs a client certificate; S3 needs keys; MLflow checks the Host header."""
    import ssl

    from reviosa.services import stack

    servers = stack.load_state(s3_server.root).servers
    weed, mlf = servers["s3"], servers["mlflow"]
    bucket = s3_server.storage.bucket
    s3_port = weed.ports["s3"]
    ports = _listening_ports(weed.pid)
    assert s3_port in ports and len(ports) >= 5, ports  # master, volume, filer, admin and their gRPC ports too
    assert set(ports.values()) == {"0100007F"}, ports  # 127.0.0.1 only
    boundary = "reviosa-test"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"evil.txt\"\r\n\r\n"
            f"evil\r\n--{boundary}--\r\n").encode()
    internal = sorted(set(ports) - {s3_port})
    for port in internal:
        # The reported exploit: `curl -F file=@x http://127.0.0.1:<filer>/buckets/reviosa/x`, on every port.
        status = _plain_http(port, "POST", f"/buckets/{bucket}/evil.txt", form,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status is None or status >= 400, (port, status)
        assert _plain_http(port, "GET", "/") in (None, 400), port  # no status page, no listing
        try:
            reply = _tls_exchange(port)
        except (ssl.SSLError, ConnectionError):
            reply = b""
        assert reply == b"", (port, reply)
    # With the stack's own certificate the same ports answer: the refusals above are authentication.
    tls = weed.extra["tls"]
    for port in internal:
        assert _tls_exchange(port, (tls["cert"], tls["key"]), tls["ca"]), port
    client = s3_server.storage.minio()
    objects = {o.object_name for o in client.list_objects(bucket, recursive=True)}
    assert not any("evil" in name for name in objects), objects

    # S3: anonymous requests are refused, signed ones work.
    client.put_object(bucket, "anon/secret.txt", io.BytesIO(b"secret"), 6)
    assert _plain_http(s3_port, "PUT", f"/{bucket}/anon/evil.txt", b"evil") == 403
    assert _plain_http(s3_port, "GET", f"/{bucket}/anon/secret.txt") == 403
    assert client.get_object(bucket, "anon/secret.txt").read() == b"secret"
    with pytest.raises(Exception):
        client.stat_object(bucket, "anon/evil.txt")

    # MLflow: one port, loopback only, and only requests addressed to it by its own name.
    mlflow_port = int(mlf.url.rsplit(":", 1)[1])
    assert _listening_ports(mlf.pid) == {mlflow_port: "0100007F"}
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _plain_http(mlflow_port, "GET", search, headers={"Host": f"127.0.0.1:{mlflow_port}"}) == 200
    assert _plain_http(mlflow_port, "GET", search, headers={"Host": f"localhost:{mlflow_port}"}) == 200
    for host in ("evil.example.com", f"evil.example.com:{mlflow_port}", f"10.0.0.7:{mlflow_port}"):
        assert _plain_http(mlflow_port, "GET", search, headers={"Host": host}) == 403, host
        body = json.dumps({"name": "rebound"}).encode()
        assert _plain_http(mlflow_port, "POST", "/api/2.0/mlflow/experiments/create", body,
                           {"Host": host, "Content-Type": "application/json"}) == 403, host
