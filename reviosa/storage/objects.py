"""Writing ``s3://`` objects: folders, small text files, and removing prefixes (the counterpart of ``fetch``).

Like reads, every write goes through the storage config (:func:`~reviosa.storage.config.load_storage_config`), so
endpoint, bucket and keys never come from ambient ``AWS_*`` endpoint variables. An S3 PUT is atomic per object: a
reader sees a whole object or none, which is what checkpoint commits (a marker file written last) rely on.
"""

from __future__ import annotations

import os
from pathlib import Path

from reviosa.storage.config import StorageConfig, load_storage_config
from reviosa.storage.fetch import S3_SCHEME, _key, is_s3


def _fs(storage: StorageConfig | None):
    return (storage or load_storage_config()).s3fs()


def join(uri: str, *parts: str) -> str:
    """``s3://b/a`` + ``x``, ``y`` → ``s3://b/a/x/y``."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def upload(src: str | os.PathLike, uri: str, storage: StorageConfig | None = None) -> int:
    """Copy file ``src`` to object ``uri``, or every file below folder ``src`` under prefix ``uri``; files sent."""
    if not is_s3(uri):
        raise ValueError(f"{uri}: not an {S3_SCHEME} URI")
    fs, src = _fs(storage), Path(src)
    if src.is_file():
        fs.put_file(str(src), _key(uri))
        return 1
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for path in files:
        # One PUT per file keeps the layout exactly (s3fs' recursive put nests the folder name in some cases).
        fs.put_file(str(path), f"{_key(uri)}/{path.relative_to(src).as_posix()}")
    return len(files)


def write_text(uri: str, text: str, storage: StorageConfig | None = None) -> None:
    """Write one small object (a single PUT: readers see the old or the new text, never a mix)."""
    _fs(storage).pipe_file(_key(uri), text.encode())


def read_text(uri: str, storage: StorageConfig | None = None) -> str | None:
    """The text of one object, or None when it does not exist."""
    try:
        return _fs(storage).cat_file(_key(uri)).decode()
    except FileNotFoundError:
        return None


def folders(uri: str, storage: StorageConfig | None = None) -> list[str]:
    """Names of the immediate sub-prefixes ("folders") of prefix ``uri`` that hold at least one object."""
    root = _key(uri) + "/"
    # From the object keys, not the listing's common prefixes: some stores (SeaweedFS) keep a prefix whose objects
    # were all deleted as an empty folder.
    keys = _fs(storage).find(root)
    return sorted({k[len(root):].split("/", 1)[0] for k in keys if k.startswith(root) and "/" in k[len(root):]})


def remove(uri: str, storage: StorageConfig | None = None) -> None:
    """Delete object ``uri`` or every object under prefix ``uri`` (nothing there is fine)."""
    fs = _fs(storage)
    try:
        fs.rm(_key(uri), recursive=True)
    except FileNotFoundError:
        pass
