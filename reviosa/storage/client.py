"""Checked access to the object store: wrong credentials and unreachable endpoints become clear errors."""

from __future__ import annotations

from reviosa.storage.config import StorageConfig
from reviosa.storage.errors import StorageAuthError, StorageError, StorageUnavailableError

# S3 error codes that mean "these keys are wrong", as sent by AWS, MinIO and SeaweedFS.
AUTH_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken"}


def translate_s3_error(err: BaseException, cfg: StorageConfig) -> StorageError:
    """Map a minio/urllib3 exception to a storage error whose message says what to fix."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(err, S3Error) and err.code in AUTH_CODES:
        creds = cfg.credentials()
        return StorageAuthError(
            f"S3 endpoint {cfg.endpoint} rejected the credentials (access key {creds.access_key[:4]}…, "
            f"from {creds.source}): {err.code}. Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the mounted secret.")
    if isinstance(err, S3Error):
        return StorageError(f"S3 error from {cfg.endpoint} on bucket {cfg.bucket!r}: {err.code}: {err.message}")
    if isinstance(err, (Urllib3Error, OSError)):
        return StorageUnavailableError(f"S3 endpoint {cfg.endpoint} is unreachable ({type(err).__name__}: {err}); "
                                       "is the server running (`reviosa services status`)?")
    return StorageError(f"S3 request to {cfg.endpoint} failed: {err!r}")


def check_access(cfg: StorageConfig, *, create_bucket: bool = False) -> None:
    """Verify credentials and the bucket with one signed request; optionally create the bucket."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError as Urllib3Error

    # One attempt only: the default retry policy turns a stopped server into a minute-long hang.
    client = cfg.minio(fail_fast=True)
    try:
        exists = client.bucket_exists(cfg.bucket)
        if not exists and create_bucket:
            client.make_bucket(cfg.bucket)
        elif not exists:
            raise StorageError(f"bucket {cfg.bucket!r} does not exist at {cfg.endpoint}")
    except (S3Error, Urllib3Error, OSError) as err:
        raise translate_s3_error(err, cfg) from None
