"""One S3 configuration for every client (minio SDK, s3fs, DVC, MLflow server); credentials never live in code."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml

from reviosa.storage.errors import StorageConfigError

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
# Environment overrides, one per field; a Kubernetes Deployment sets these from a ConfigMap.
ENV_OVERRIDES = {
    "endpoint": "REVIOSA_S3_ENDPOINT",
    "bucket": "REVIOSA_S3_BUCKET",
    "region": "REVIOSA_S3_REGION",
    "secret_dir": "REVIOSA_S3_SECRET_DIR",
    "credentials_file": "REVIOSA_S3_CREDENTIALS_FILE",
}
CONFIG_ENV = "REVIOSA_STORAGE_CONFIG"
STATE_DIR_ENV = "REVIOSA_STATE_DIR"


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; ``repr`` hides the secret so it never lands in logs."""

    access_key: str
    secret_key: str = field(repr=False)
    source: str = "env"


@dataclass(frozen=True)
class StorageConfig:
    """Where objects live: endpoint URL, bucket, region and key prefixes, plus where to find credentials."""

    endpoint: str = "http://127.0.0.1:8333"
    bucket: str = "reviosa"
    region: str = "us-east-1"  # MinIO and SeaweedFS sign with us-east-1 unless configured otherwise
    dvc_prefix: str = "dvc"
    mlflow_prefix: str = "mlflow-artifacts"
    secret_dir: str | None = None  # a mounted Kubernetes Secret: files AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    credentials_file: str | None = None  # JSON {"access_key": ..., "secret_key": ...}, written by `services up`

    def __post_init__(self) -> None:
        url = urlparse(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StorageConfigError(f"`endpoint` must look like http://host:port or https://host, "
                                     f"got {self.endpoint!r}")
        if url.path not in ("", "/"):
            raise StorageConfigError(f"`endpoint` must not contain a path (put it in the prefixes): {self.endpoint!r}")
        if not 3 <= len(self.bucket) <= 63 or not self.bucket.replace("-", "").replace(".", "").isalnum() \
                or self.bucket.lower() != self.bucket:
            raise StorageConfigError(f"`bucket` {self.bucket!r} is not a valid S3 bucket name "
                                     "(3-63 chars, a-z 0-9 . -)")

    @property
    def secure(self) -> bool:
        """True for https endpoints."""
        return urlparse(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        """``host:port`` form the minio SDK wants."""
        return urlparse(self.endpoint).netloc

    @property
    def dvc_url(self) -> str:
        """DVC remote URL, ``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.dvc_prefix}"

    @property
    def mlflow_artifacts_url(self) -> str:
        """MLflow ``--artifacts-destination``."""
        return f"s3://{self.bucket}/{self.mlflow_prefix}"

    def credentials(self, env: Mapping[str, str] | None = None) -> S3Credentials:
        """Resolve credentials: environment, then the mounted secret folder, then the local credentials file."""
        env = os.environ if env is None else env
        if env.get(ACCESS_KEY_ENV) and env.get(SECRET_KEY_ENV):
            return S3Credentials(env[ACCESS_KEY_ENV], env[SECRET_KEY_ENV], "env")
        if self.secret_dir:
            d = Path(self.secret_dir)
            try:
                return S3Credentials((d / ACCESS_KEY_ENV).read_text().strip(), (d / SECRET_KEY_ENV).read_text().strip(),
                                     f"secret {d}")
            except OSError as err:
                raise StorageConfigError(f"secret folder {d} must hold files {ACCESS_KEY_ENV} and "
                                         f"{SECRET_KEY_ENV}: {err}") from None
        if self.credentials_file:
            try:
                raw = json.loads(Path(self.credentials_file).read_text())
                return S3Credentials(raw["access_key"], raw["secret_key"], f"file {self.credentials_file}")
            except (OSError, ValueError, KeyError) as err:
                raise StorageConfigError(f"cannot read credentials file {self.credentials_file}: {err!r}") from None
        raise StorageConfigError(f"no S3 credentials: set {ACCESS_KEY_ENV}/{SECRET_KEY_ENV}, mount a secret folder "
                                 f"(`secret_dir` / {ENV_OVERRIDES['secret_dir']}), or run `reviosa services up`")

    def client_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses (dvc, mlflow server, boto3) that talk to this store."""
        creds = self.credentials(env)
        return {
            ACCESS_KEY_ENV: creds.access_key,
            SECRET_KEY_ENV: creds.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            # boto3 >= 1.36 sends CRC checksums by default, which several S3-compatible stores reject.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def minio(self, env: Mapping[str, str] | None = None, *, fail_fast: bool = False):
        """A ``minio.Minio`` client for this store; ``fail_fast`` drops retries and uses 5 s connect timeouts."""
        from minio import Minio

        creds = self.credentials(env)
        http = None
        if fail_fast:
            import urllib3

            http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=urllib3.Retry(total=0))
        return Minio(self.host, access_key=creds.access_key, secret_key=creds.secret_key, secure=self.secure,
                     region=self.region, http_client=http)

    def s3fs(self, env: Mapping[str, str] | None = None):
        """An ``s3fs.S3FileSystem`` for this store (paths are ``bucket/key``)."""
        import s3fs

        creds = self.credentials(env)
        return s3fs.S3FileSystem(key=creds.access_key, secret=creds.secret_key, endpoint_url=self.endpoint,
                                 client_kwargs={"region_name": self.region}, skip_instance_cache=True)

    def dvc_remote_config(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Remote settings for ``dvc.api`` / ``DVCFileSystem(remote_config=...)``, credentials included."""
        creds = self.credentials(env)
        return {"url": self.dvc_url, "endpointurl": self.endpoint, "region": self.region,
                "access_key_id": creds.access_key, "secret_access_key": creds.secret_key}

    def to_yaml(self) -> str:
        """YAML form (never contains secrets; only where to find them)."""
        return yaml.safe_dump({"storage": {k: v for k, v in asdict(self).items() if v is not None}}, sort_keys=False)


def repo_root(start: Path | None = None) -> Path:
    """The enclosing git/DVC repository root of ``start`` (default: the working directory), else ``start``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / ".git").exists() or (d / ".dvc").is_dir():
            return d
    return here


def state_dir(start: Path | None = None) -> Path:
    """The local state folder: ``$REVIOSA_STATE_DIR`` or ``.reviosa/`` at the enclosing repository root."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).resolve()
    return repo_root(start) / ".reviosa"


def local_config_path(state: Path | None = None) -> Path:
    """Storage YAML written by ``reviosa services up`` for the embedded stack."""
    return (state or state_dir()) / "services" / "storage.yaml"


def load_storage_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> StorageConfig:
    """Load from ``path`` (or ``$REVIOSA_STORAGE_CONFIG``, or the local stack's file) then apply env overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    chosen = path or env.get(CONFIG_ENV)
    if chosen is None and not env.get(ENV_OVERRIDES["endpoint"]) and local_config_path().exists():
        chosen = local_config_path()
    if chosen is not None:
        try:
            doc = yaml.safe_load(Path(chosen).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise StorageConfigError(f"cannot read storage config {chosen}: {err}") from None
        raw = doc.get("storage", doc) if isinstance(doc, dict) else None
        if not isinstance(raw, dict):
            raise StorageConfigError(f"{chosen}: expected a mapping (optionally under `storage:`)")
        known = {f.name for f in fields(StorageConfig)}
        unknown = set(raw) - known
        if unknown:
            raise StorageConfigError(f"{chosen}: unknown storage keys {sorted(unknown)}; known: {sorted(known)}")
    for key, var in ENV_OVERRIDES.items():
        if env.get(var):
            raw[key] = env[var]
    return StorageConfig(**raw)
