"""The MLflow tracking server: sqlite locally, Postgres in the cluster, artifacts proxied to S3."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from reviosa.services.process import ServerProcess, free_ports, spawn, wait_http
from reviosa.storage.config import StorageConfig

# Environment of every reviosa MLflow server (local process and Kubernetes Deployment alike).
SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # mlflow 3.x reports usage unless told not to
    "DO_NOT_TRACK": "true",
    # The GenAI job runner starts 7 huey consumer processes (~1.5 GB RSS together); reviosa submits no jobs.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@dataclass(frozen=True)
class MlflowServerConfig:
    """Settings of ``mlflow server``; the same fields drive the local process and the Kubernetes manifest."""

    # sqlite:////abs/mlflow.db locally; None: taken from $MLFLOW_BACKEND_STORE_URI, so a database password never
    # appears on a command line (world-readable in /proc) - the cluster entry point sets it (mlflow_server.py).
    backend_store_uri: str | None
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    # In-cluster clients reach the server by its Service name, which MLflow's Host-header check rejects unless
    # listed here with its port (e.g. "mlflow.mlops.svc.cluster.local:5000").
    allowed_hosts: list[str] = field(default_factory=list)
    # Browser origins allowed to call the API (MLflow's default admits any localhost origin, i.e. any local web app).
    cors_allowed_origins: list[str] = field(default_factory=list)
    app_name: str | None = None  # "basic-auth": every request but /health needs a user (the cluster's server)

    def argv(self, storage: StorageConfig) -> list[str]:
        """The ``mlflow server`` command line (artifacts served by the server, so clients need no S3 keys)."""
        argv = ["mlflow", "server"]
        if self.backend_store_uri is not None:
            argv += ["--backend-store-uri", self.backend_store_uri]
        argv += ["--artifacts-destination", storage.mlflow_artifacts_url,
                 "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        if self.app_name:
            argv += ["--app-name", self.app_name]
        if self.allowed_hosts:
            argv += ["--allowed-hosts", ",".join(self.allowed_hosts)]
        if self.cors_allowed_origins:
            argv += ["--cors-allowed-origins", ",".join(self.cors_allowed_origins)]
        return argv + ["--serve-artifacts"]


def start_mlflow(state: Path, storage: StorageConfig, *, port: int = 0, host: str = "127.0.0.1",
                 allowed_hosts: list[str] | None = None, timeout: float = 120.0) -> ServerProcess:
    """Start ``mlflow server`` with a sqlite store under ``state`` and wait for ``/health``.

    Unless ``allowed_hosts`` says otherwise, only requests addressed to this server's own name and port are served
    (a page whose domain resolves to 127.0.0.1 sends its own name as Host); MLflow's default would also admit any
    private-network address and port.
    """
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_ports(1, host)[0]
    own = [f"{host}:{port}"] + ([f"localhost:{port}"] if host == "127.0.0.1" else [])
    cfg = MlflowServerConfig(backend_store_uri=f"sqlite:///{state / 'mlflow.db'}", host=host, port=port,
                             allowed_hosts=list(allowed_hosts) if allowed_hosts is not None else own,
                             cors_allowed_origins=[f"http://{h}" for h in own])
    argv = [sys.executable, "-m", *cfg.argv(storage)]
    env = {**storage.client_env(), **SERVER_ENV}
    server = spawn("mlflow", argv, log=state / "mlflow.log", url=f"http://{host}:{port}", env=env, cwd=state,
                   ports={"http": port})
    try:
        wait_http(server, "/health", timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server
