"""One S3 configuration for every client (minio SDK, s3fs, DVC, MLflow server); credentials never live in code.

The config says where objects live (endpoint, bucket, region, key prefixes) and where to find the keys; the keys
themselves come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a mounted secret folder or the local stack's
credentials file, because they are secrets, not settings. ``configs/default.yaml`` ships the defaults.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping
from urllib.parse import urlparse

from pydantic import Field, field_validator

from reviosa.config import Config
from reviosa.storage.errors import StorageCredentialsError

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
#: names the storage YAML a process uses; a Kubernetes pod points it at the mounted ConfigMap file
CONFIG_ENV = "REVIOSA_STORAGE_CONFIG"
STATE_DIR_ENV = "REVIOSA_STATE_DIR"
CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; ``repr`` hides the secret so it never lands in logs."""

    access_key: str
    secret_key: str = field(repr=False)
    source: str = "env"


class StorageConfig(Config):
    """Where objects live: endpoint URL, bucket, region and key prefixes, plus where to find credentials."""

    shipped_dir: ClassVar[Path | None] = CONFIG_DIR

    endpoint: str = Field("http://127.0.0.1:8333", description="S3 API URL, http://host:port or https://host")
    bucket: str = "reviosa"
    # MinIO and SeaweedFS sign with us-east-1 unless configured otherwise.
    region: str = "us-east-1"
    dvc_prefix: str = Field("dvc", description="key prefix of the DVC remote")
    mlflow_prefix: str = Field("mlflow-artifacts", description="key prefix of MLflow's artifact store")
    secret_dir: str | None = Field(None, description="mounted Kubernetes Secret folder with files AWS_ACCESS_KEY_ID "
                                   "and AWS_SECRET_ACCESS_KEY")
    credentials_file: str | None = Field(None, description='JSON {"access_key": ..., "secret_key": ...}, written '
                                         "by `reviosa services up`")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_server(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"must look like http://host:port or https://host, got {value!r}")
        if url.path not in ("", "/"):
            raise ValueError(f"must not contain a path (put it in the prefixes): {value!r}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9.-]{3,63}", value):
            raise ValueError(f"{value!r} is not a valid S3 bucket name (3-63 chars, a-z 0-9 . -)")
        return value

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
                raise StorageCredentialsError(f"secret folder {d} must hold files {ACCESS_KEY_ENV} and "
                                              f"{SECRET_KEY_ENV}: {err}") from None
        if self.credentials_file:
            try:
                raw = json.loads(Path(self.credentials_file).read_text())
                return S3Credentials(raw["access_key"], raw["secret_key"], f"file {self.credentials_file}")
            except (OSError, ValueError, KeyError) as err:
                raise StorageCredentialsError(f"cannot read credentials file {self.credentials_file}: "
                                              f"{err!r}") from None
        raise StorageCredentialsError(f"no S3 credentials: set {ACCESS_KEY_ENV}/{SECRET_KEY_ENV}, mount a secret "
                                      "folder (`secret_dir` in the storage config), or run `reviosa services up`")

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


def load_storage_config(path: str | os.PathLike | None = None) -> StorageConfig:
    """The storage config this process uses; the first that is given wins, there are no per-field overrides.

    1. ``path`` (a YAML path or a shipped name), e.g. a command's ``--config``;
    2. the file named by ``$REVIOSA_STORAGE_CONFIG`` (in a cluster: the mounted ``reviosa-storage`` ConfigMap);
    3. the local stack's file written by ``reviosa services up`` (:func:`local_config_path`), if it exists;
    4. the shipped ``configs/default.yaml``.

    Problems raise ``ConfigError`` naming the file and the field.
    """
    chosen = path or os.environ.get(CONFIG_ENV) or None
    if chosen is None and local_config_path().is_file():
        chosen = local_config_path()
    return StorageConfig.from_yaml(chosen if chosen is not None else "default")
