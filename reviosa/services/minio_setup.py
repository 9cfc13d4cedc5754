"""The cluster's S3 accounts: one MinIO user per workload, each with its own bucket policy (the setup Job).

``python -m reviosa.services.minio_setup --root-secret-dir DIR --users-dir DIR --policies-dir DIR`` signs in with the
MinIO root account (mounted Secret ``reviosa-minio-root``), creates the bucket of the storage config, and for every
folder ``<users-dir>/<name>/`` (a mounted Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) creates or updates
that user and attaches policy ``reviosa-<name>`` from ``<policies-dir>/<name>.json``. Idempotent; every secret is
read from a file, none is an argument.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from reviosa.storage.config import ACCESS_KEY_ENV, SECRET_KEY_ENV, StorageConfig, load_storage_config

ROOT_USER, ROOT_PASSWORD = "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"


@dataclass(frozen=True)
class Account:
    """One workload's S3 user and the policy it gets."""

    name: str
    access_key: str
    secret_key: str
    policy: dict

    @property
    def policy_name(self) -> str:
        """Name of the policy in MinIO."""
        return f"reviosa-{self.name}"

    def __repr__(self) -> str:  # keep the secret key out of logs and tracebacks
        return f"Account({self.name!r}, access_key={self.access_key!r}, policy={self.policy_name!r})"


def _read(folder: Path, key: str) -> str:
    path = folder / key
    if not path.is_file():
        raise SystemExit(f"{folder}: missing {key} (mount the Secret with that key)")
    return path.read_text().strip()


def accounts(users_dir: str | Path, policies_dir: str | Path) -> list[Account]:
    """Every account to set up: the user folders, each with its policy (a user without one is an error)."""
    users_dir, policies_dir = Path(users_dir), Path(policies_dir)
    out = []
    for folder in sorted(p for p in users_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        policy_file = policies_dir / f"{folder.name}.json"
        if not policy_file.is_file():
            raise SystemExit(f"user {folder.name!r} has no policy {policy_file}")
        out.append(Account(folder.name, _read(folder, ACCESS_KEY_ENV), _read(folder, SECRET_KEY_ENV),
                           json.loads(policy_file.read_text())))
    keys = [a.access_key for a in out]
    if len(set(keys)) != len(keys):
        raise SystemExit("two workloads share an access key: each needs credentials of its own")
    return out


def apply(storage: StorageConfig, root: tuple[str, str], wanted: list[Account], timeout: float = 300.0) -> None:
    """Create the bucket, the policies and the users, and attach each user's policy (waits for MinIO to start)."""
    from minio import Minio, MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException
    from urllib3.exceptions import HTTPError

    if any(a.access_key == root[0] for a in wanted):
        raise SystemExit("a workload uses the root access key; give it its own")
    s3 = Minio(storage.host, access_key=root[0], secret_key=root[1], secure=storage.secure, region=storage.region)
    admin = MinioAdmin(endpoint=storage.host, credentials=StaticProvider(*root), secure=storage.secure)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not s3.bucket_exists(storage.bucket):
                s3.make_bucket(storage.bucket)
            break
        except (HTTPError, OSError) as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"MinIO at {storage.endpoint} did not answer within {timeout:.0f} s: {err}")
            time.sleep(3)
    for acc in wanted:
        admin.policy_add(acc.policy_name, policy=acc.policy)
        admin.user_add(acc.access_key, acc.secret_key)
        try:
            admin.attach_policy([acc.policy_name], user=acc.access_key)
        except MinioAdminException as err:
            if "already" not in str(err).lower():  # attaching twice is refused, which is fine on a rerun
                raise
        print(f"{acc.name}: user {acc.access_key} with policy {acc.policy_name}")


def main(argv: list[str] | None = None) -> None:
    """Set up every account the mounted folders describe."""
    p = argparse.ArgumentParser(prog="python -m reviosa.services.minio_setup", description=__doc__.split("\n")[0])
    p.add_argument("--root-secret-dir", required=True, help=f"mounted Secret with {ROOT_USER} and {ROOT_PASSWORD}")
    p.add_argument("--users-dir", required=True, help="one mounted Secret folder per workload")
    p.add_argument("--policies-dir", required=True, help="<workload>.json policy documents")
    p.add_argument("--storage-config", help="StorageConfig file (default: $REVIOSA_STORAGE_CONFIG)")
    args = p.parse_args(argv)
    root_dir = Path(args.root_secret_dir)
    apply(load_storage_config(args.storage_config), (_read(root_dir, ROOT_USER), _read(root_dir, ROOT_PASSWORD)),
          accounts(args.users_dir, args.policies_dir))


if __name__ == "__main__":
    main()
