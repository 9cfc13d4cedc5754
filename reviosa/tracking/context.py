"""Provenance tags for every run: git commit (and whether the tree was dirty) and the dataset version."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reviosa.tracking.naming import TAG_DATA_MD5, TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_GIT_DIRTY


def _git(root: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(root: Path) -> tuple[str | None, bool]:
    """HEAD commit of the repository at ``root`` and whether tracked files differ from it."""
    sha = _git(root, "rev-parse", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    return sha, dirty


def dataset_version(root: Path, dvc_file: str = "data.dvc") -> tuple[str | None, str | None]:
    """``(data-vN, md5)`` of the working tree's ``data.dvc``; the tag is None when no version matches."""
    from reviosa.storage.dataversions import TAG_PREFIX, parse_dvc_file

    path = root / dvc_file
    if not path.exists():
        return None, None
    md5 = parse_dvc_file(path.read_text())["md5"]
    tags = (_git(root, "tag", "--list", f"{TAG_PREFIX}*", "--sort=-version:refname") or "").split()
    for tag in tags:
        text = _git(root, "show", f"{tag}:{dvc_file}")
        if text and parse_dvc_file(text)["md5"] == md5:
            return tag, md5
    return None, md5


def run_tags(root: str | Path | None = None, data_version: str | None = None) -> dict[str, str]:
    """Tags recorded on every run: git commit, dirty flag, dataset version tag and hash."""
    root = Path(root or Path.cwd()).resolve()
    sha, dirty = git_commit(root)
    tag, md5 = dataset_version(root)
    tags = {TAG_GIT_DIRTY: str(dirty).lower(), TAG_DATA_VERSION: data_version or tag or "untracked"}
    if sha:
        tags[TAG_GIT_COMMIT] = sha
    if md5:
        tags[TAG_DATA_MD5] = md5
    return tags
