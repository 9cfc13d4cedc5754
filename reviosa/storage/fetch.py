"""Reading ``s3://`` objects: cached local copies (checkpoints, weights), plain copies (splits), bounded reads (videos).

Every S3 read of the project goes through here, so endpoint, bucket and keys always come from the storage config
(:func:`~reviosa.storage.config.load_storage_config`), never from ambient ``AWS_*`` endpoint variables that a
process may or may not have.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from reviosa.storage.config import StorageConfig, load_storage_config
from reviosa.storage.errors import ObjectTooLargeError

S3_SCHEME = "s3://"
CACHE_ENV = "REVIOSA_CACHE"


def is_s3(uri: str | os.PathLike) -> bool:
    """True for an ``s3://`` URI."""
    return str(uri).startswith(S3_SCHEME)


def _key(uri: str) -> str:
    """``s3://bucket/a/b/`` → ``bucket/a/b`` (the path form s3fs takes)."""
    return uri.removeprefix(S3_SCHEME).rstrip("/")


def _objects(fs, uri: str) -> dict[str, dict]:
    """``{key: info}`` of the object ``uri`` names, or of every object under it as a prefix."""
    found = {k: v for k, v in fs.find(_key(uri), detail=True).items() if not k.endswith("/")}
    if not found:
        raise FileNotFoundError(f"{uri}: no such object or prefix")
    return found


def _copy(fs, uri: str, objects: dict[str, dict], dest: Path) -> Path:
    root = _key(uri)
    if list(objects) == [root]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(root, str(dest))
        return dest
    inside = dest.resolve()
    for key in objects:
        # The prefix's layout below ``root`` is kept, so a folder uploaded with put(recursive) comes back whole.
        target = dest / key[len(root) + 1:]
        # Object keys are data: one such as ``prefix/../../x`` must not write outside ``dest``.
        if not target.resolve().is_relative_to(inside):
            raise ValueError(f"{uri}: object {key!r} would be written outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    return dest


def download(uri: str, dest: str | os.PathLike, storage: StorageConfig | None = None) -> Path:
    """Copy the ``s3://`` object ``uri`` to file ``dest``, or every object under prefix ``uri`` into folder ``dest``."""
    fs = (storage or load_storage_config()).s3fs()
    return _copy(fs, uri, _objects(fs, uri), Path(dest))


def fetch(uri: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
          storage: StorageConfig | None = None) -> Path:
    """A local path for a local path or an ``s3://`` object or prefix (a cached copy).

    The cache folder (``cache_dir``, ``$REVIOSA_CACHE`` or ``~/.cache/reviosa``) is keyed by the endpoint, the URI
    and the objects' sizes and ETags, so a changed object is fetched again; a copy appears there only when complete.
    Raises ``FileNotFoundError`` when nothing is there.
    """
    uri = str(uri)
    if not is_s3(uri):
        path = Path(uri).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        return path
    storage = storage or load_storage_config()
    fs = storage.s3fs()
    objects = _objects(fs, uri)
    stamp = sorted((k, v.get("size"), str(v.get("ETag", ""))) for k, v in objects.items())
    key = hashlib.sha256(repr((storage.endpoint, _key(uri), stamp)).encode()).hexdigest()[:20]
    cache = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reviosa")
    dest = cache / "s3" / key / _key(uri).rsplit("/", 1)[-1]
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".get-"))
    try:
        os.replace(_copy(fs, uri, objects, tmp / "d"), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def read_bytes(uri: str, limit: int, storage: StorageConfig | None = None) -> bytes:
    """The bytes of one ``s3://`` object: ``ObjectTooLargeError`` past ``limit``, ``FileNotFoundError`` if absent."""
    fs = (storage or load_storage_config()).s3fs()
    size = fs.size(_key(uri))
    if size is not None and size > limit:
        raise ObjectTooLargeError(f"{uri} is {size} bytes; the limit is {limit}")
    with fs.open(_key(uri), "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ObjectTooLargeError(f"{uri} is larger than the limit of {limit} bytes")
    return data
