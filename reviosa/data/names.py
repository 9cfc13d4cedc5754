"""Names that come from data (video, frame, expression ids) used as parts of paths we write or read."""

from __future__ import annotations

import os
from pathlib import Path


class UnsafeName(ValueError):
    """A name from data that would not stay one folder entry inside its root."""


def check_component(name: object, what: str = "name") -> str:
    """``name`` if it is one plain path component (no separator, not ``.``/``..``, no NUL), else :class:`UnsafeName`."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"{what} {name!r} must be a non-empty string")
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name or (os.altsep and os.altsep in name):
        raise UnsafeName(f"{what} {name!r} is not a plain file name (separators, '.', '..' and NUL are refused)")
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
