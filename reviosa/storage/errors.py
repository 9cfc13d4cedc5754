"""Errors raised by the storage layer; each message names the setting or command that fixes it."""

from __future__ import annotations


class StorageError(RuntimeError):
    """Base class for object-storage and data-version failures."""


class StorageConfigError(StorageError, ValueError):
    """The storage configuration is missing or malformed."""


class StorageAuthError(StorageError):
    """The S3 endpoint rejected the credentials."""


class StorageUnavailableError(StorageError):
    """The S3 endpoint cannot be reached."""


class DataVersionError(StorageError):
    """A DVC dataset-version operation failed (snapshot, rollback, checksum)."""
