"""Names that come from data (video, frame, expression ids) used as parts of paths we write or read."""

from __future__ import annotations

import os
from pathlib import Path

#: room for the suffixes writers add (``.png``, ``overlay_``, ``_b000``) under the usual 255-byte limit
MAX_NAME_BYTES = 200


class UnsafeName(ValueError):
    """A name from data that would not stay one folder entry inside its root."""


def check_component(name: object, what: str = "name") -> str:
    """``name`` if a plain path component (no separator, ``.``, ``..``, NUL; UTF-8, <= 200 bytes), else UnsafeName."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"{what} {name!r} must be a non-empty string")
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name or (os.altsep and os.altsep in name):
        raise UnsafeName(f"{what} {name!r} is not a plain file name (separators, '.', '..' and NUL are refused)")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape: no file system can store it
        raise UnsafeName(f"{what} {name!r} is not valid Unicode text") from None
    if size > MAX_NAME_BYTES:
        raise UnsafeName(f"{what} {name[:40]!r}... is {size} bytes long; names are at most {MAX_NAME_BYTES} bytes "
                         "(file systems stop at 255, and suffixes are added)")
    return name


def inside(root: str | os.PathLike, *parts: str, what: str = "name") -> Path:
    """``root/part/...`` after checking each part and that the resolved path stays inside ``root``."""
    for p in parts:
        check_component(p, what)
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        # A symlink inside root can still point elsewhere.
        raise UnsafeName(f"{what} {'/'.join(parts)!r} resolves to {path}, outside {base}")
    return path


def relative_inside(root: str | os.PathLike, relpath: str, what: str = "path") -> Path:
    """A relative ``a/b/c`` path from data (e.g. a video file) resolved inside ``root``, every part checked."""
    if not isinstance(relpath, str) or not relpath or relpath.startswith(("/", "\\")):
        raise UnsafeName(f"{what} {relpath!r} must be a non-empty relative path")
    return inside(root, *relpath.split("/"), what=what)
