"""Runtime errors of the storage layer; each message names the setting or command that fixes it.

A malformed storage config is a ``reviosa.config.ConfigError`` like every other config problem.
"""

from __future__ import annotations


class StorageError(RuntimeError):
    """Base class for object-storage and data-version failures."""


class StorageCredentialsError(StorageError):
    """No S3 keys were found, or the secret folder or credentials file holding them cannot be read."""


class StorageAuthError(StorageError):
    """The S3 endpoint rejected the credentials."""


class StorageUnavailableError(StorageError):
    """The S3 endpoint cannot be reached."""


class ObjectTooLargeError(StorageError):
    """An object is larger than the caller's limit, so it is not downloaded."""


class DataVersionError(StorageError):
    """A DVC dataset-version operation failed (snapshot, rollback, checksum)."""
