"""The local service stack behind ``reviosa services up/down/status`` and the pytest fixtures.

S3 (SeaweedFS) and an MLflow server (sqlite store, artifacts in that S3) on 127.0.0.1. State lives in
``<state>/services/``: ``state.json`` (pids, ports), ``credentials.json`` (random keys, mode 0600, git-ignored
because ``.reviosa/`` is) and ``storage.yaml`` (the :class:`StorageConfig` every client then loads).

A stack kept in another state folder (``reviosa demo`` keeps its own) is listed in ``stacks.json`` of the default
one (:func:`register_stack`), so ``reviosa services status`` shows it and ``reviosa services down`` stops it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from reviosa.data.atomic import atomic_write_text
from reviosa.services.mlflow import start_mlflow
from reviosa.services.process import ServerProcess, port_in_use
from reviosa.services.seaweed import start_seaweed, stop_seaweed
from reviosa.storage.config import S3Credentials, StorageConfig, local_config_path, state_dir
from reviosa.storage.errors import StorageError

DEFAULT_BUCKET = "reviosa"
INDEX_FILE = "stacks.json"


@dataclass
class StackState:
    """What is running: servers by name, and the storage config clients should use."""

    root: Path
    servers: dict[str, ServerProcess] = field(default_factory=dict)

    @property
    def services_dir(self) -> Path:
        """``<state>/services``."""
        return self.root / "services"

    @property
    def storage(self) -> StorageConfig:
        """Storage config of the local S3 (credentials from the generated file)."""
        return load_local_storage(self.root)

    @property
    def tracking_uri(self) -> str | None:
        """MLflow URL if the server is part of the stack."""
        srv = self.servers.get("mlflow")
        return srv.url if srv else None

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        atomic_write_text(self.services_dir / "state.json",
                          json.dumps({k: v.to_json() for k, v in self.servers.items()}, indent=1))


def load_state(root: Path | None = None) -> StackState:
    """Read ``state.json`` (empty state if absent)."""
    root = Path(root or state_dir()).resolve()
    path = root / "services" / "state.json"
    servers = {}
    if path.exists():
        servers = {k: ServerProcess.from_json(v) for k, v in json.loads(path.read_text()).items()}
    return StackState(root, servers)


def load_local_storage(root: Path | None = None) -> StorageConfig:
    """The :class:`StorageConfig` written by :func:`up` (its ``credentials_file`` holds the generated keys)."""
    return StorageConfig.from_yaml(local_config_path(Path(root) if root else None))


def _credentials(services: Path) -> tuple[S3Credentials, Path]:
    path = services / "credentials.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return S3Credentials(raw["access_key"], raw["secret_key"], f"file {path}"), path
    creds = S3Credentials("reviosa" + secrets.token_hex(6), secrets.token_urlsafe(24), f"file {path}")
    atomic_write_text(path, json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}))
    path.chmod(0o600)
    return creds, path


def up(root: Path | None = None, *, s3_port: int = 8333, mlflow_port: int = 5000, with_mlflow: bool = True,
       bucket: str = DEFAULT_BUCKET) -> StackState:
    """Start whatever part of the stack is not already running (port 0 = pick a free one) and record it."""
    state = load_state(root)
    services = state.services_dir
    services.mkdir(parents=True, exist_ok=True)
    creds, cred_path = _credentials(services)
    try:
        s3 = state.servers.get("s3")
        if s3 is None or not s3.alive():
            if s3_port and port_in_use(s3_port):
                raise StorageError(f"port {s3_port} is already in use; pick another with --s3-port (0 = any free)")
            s3 = start_seaweed(services / "s3", creds, buckets=[bucket], s3_port=s3_port)
            state.servers["s3"] = s3
            storage = StorageConfig(endpoint=s3.url, bucket=bucket, credentials_file=str(cred_path))
            atomic_write_text(local_config_path(state.root), storage.to_yaml())
            state.save()
        mlf = state.servers.get("mlflow")
        if with_mlflow and (mlf is None or not mlf.alive()):
            if mlflow_port and port_in_use(mlflow_port):
                raise StorageError(f"port {mlflow_port} is already in use; pick another with --mlflow-port")
            state.servers["mlflow"] = start_mlflow(services / "mlflow", state.storage, port=mlflow_port)
            state.save()
    except BaseException:
        # Leave nothing half-started behind (servers we started are recorded, so down() finds them).
        state.save()
        raise
    return state


def down(root: Path | None = None, only: str | None = None) -> list[str]:
    """Stop the recorded servers (MLflow first, it writes to S3); return the names stopped."""
    state = load_state(root)
    stopped = []
    for name in ("mlflow", "s3"):
        srv = state.servers.get(name)
        if srv is None or (only and name != only):
            continue
        if srv.alive():
            # MLflow (sqlite, artifacts already in S3) has nothing to flush; don't wait out idle keep-alives.
            stop_seaweed(srv) if name == "s3" else srv.stop(timeout=5.0)
            stopped.append(name)
        del state.servers[name]
    if state.services_dir.exists():
        state.save()
    if not state.servers:
        unregister_stack(state.root)
    return stopped


def _index_path(index: Path | None) -> Path:
    return Path(index or state_dir()).resolve() / "services" / INDEX_FILE


def _read_index(index: Path | None) -> dict[str, str]:
    path = _index_path(index)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def register_stack(root: Path, label: str, index: Path | None = None) -> None:
    """List the stack of state folder ``root`` (not the default one) in the default folder's index as ``label``."""
    root = Path(root).resolve()
    if root == Path(index or state_dir()).resolve():
        return
    stacks = _read_index(index)
    stacks.pop(str(root), None)  # the newest entry is last: the tracking URI lookup prefers it
    stacks[str(root)] = label
    atomic_write_text(_index_path(index), json.dumps(stacks, indent=1))


def unregister_stack(root: Path, index: Path | None = None) -> None:
    """Drop state folder ``root`` from the index (its servers are stopped)."""
    stacks = _read_index(index)
    if stacks.pop(str(Path(root).resolve()), None) is not None:
        atomic_write_text(_index_path(index), json.dumps(stacks, indent=1))


def registered_stacks(index: Path | None = None) -> dict[Path, str]:
    """The other state folders the index lists, by label; folders whose state no longer records a server drop out."""
    found = {}
    for root, label in _read_index(index).items():
        if load_state(Path(root)).servers:
            found[Path(root)] = label
        else:
            unregister_stack(Path(root), index)
    return found


def status(root: Path | None = None) -> dict[str, dict]:
    """Per server: pid, URL, whether the process is alive and whether it answers HTTP."""
    import urllib.error
    import urllib.request

    out = {}
    for name, srv in load_state(root).servers.items():
        answering = False
        if srv.alive():
            try:
                with urllib.request.urlopen(srv.url + ("/health" if name == "mlflow" else "/"), timeout=2):
                    answering = True
            except urllib.error.HTTPError:
                answering = True  # S3 answers anonymous requests with 403: it is up
            except OSError:
                answering = False
        out[name] = {"pid": srv.pid, "url": srv.url, "alive": srv.alive(), "answering": answering, "log": srv.log}
    return out
