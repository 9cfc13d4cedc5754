"""Dataset versions with DVC: ``data/`` tracked by ``data.dvc``, pushed to S3, each version a git tag ``data-vN``.

All DVC work goes through the real ``dvc`` CLI (its repository lock and resumable transfers) except reading
a version, which uses ``dvc.api.DVCFileSystem`` so pipeline steps need no checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reviosa.storage.client import check_access
from reviosa.storage.config import StorageConfig
from reviosa.storage.errors import DataVersionError, StorageCredentialsError

TAG_PREFIX = "data-v"
REMOTE = "storage"
_TAG_RE = re.compile(rf"^{re.escape(TAG_PREFIX)}(\d+)$")


@dataclass
class DataVersion:
    """One ``data-vN`` tag: when, why, which content hash, and what it holds."""

    tag: str
    number: int
    commit: str
    date: str
    message: str
    md5: str
    nfiles: int
    size: int
    videos: int | None = None
    expressions: int | None = None
    splits: list[str] = field(default_factory=list)


def parse_dvc_file(text: str) -> dict[str, Any]:
    """The single ``outs`` entry of a ``.dvc`` file (md5, size, nfiles, path)."""
    doc = yaml.safe_load(text) or {}
    outs = doc.get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DataVersionError(f"expected one output with an md5 in the .dvc file, got {outs!r}")
    return outs[0]


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes (DVC 3's ``hash: md5``)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class DataRepo:
    """A git + DVC repository whose ``data/`` folder is versioned in S3."""

    def __init__(self, root: str | os.PathLike, storage: StorageConfig, data_dir: str = "data") -> None:
        self.root = Path(root).resolve()
        self.storage = storage
        self.data_dir = data_dir

    # -- plumbing -------------------------------------------------------------------------------------------
    @property
    def dvc_file(self) -> Path:
        """``<root>/data.dvc``."""
        return self.root / f"{self.data_dir}.dvc"

    def _run(self, argv: list[str], what: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
        full = dict(os.environ)
        full.update({"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"})
        full.update(env or {})
        proc = subprocess.run(argv, cwd=self.root, env=full, capture_output=True, text=True)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
            raise DataVersionError(f"{what} failed (`{' '.join(argv[2:] if argv[0] == sys.executable else argv)}`, "
                                   f"exit {proc.returncode}):\n{tail}")
        return proc

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run git in the repository."""
        return self._run(["git", *args], f"git {args[0]}", check=check)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the dvc CLI with the store's credentials in its environment (never on disk)."""
        try:
            env = self.storage.client_env()
        except StorageCredentialsError:
            env = {}  # local-only commands (add, checkout) need no keys; remote ones then fail with dvc's message
        return self._run([sys.executable, "-m", "dvc", *args], f"dvc {args[0]}", env=env, check=check)

    def configure_remote(self) -> None:
        """Point the ``storage`` remote at this store in ``.dvc/config.local`` (git-ignored; no secrets)."""
        from dvc.config import Config

        cfg = Config(dvc_dir=str(self.root / ".dvc"), validate=False)
        with cfg.edit("local") as local:
            local.setdefault("remote", {})[REMOTE] = {"url": self.storage.dvc_url,
                                                      "endpointurl": self.storage.endpoint,
                                                      "region": self.storage.region}
            local.setdefault("core", {})["remote"] = REMOTE

    def init(self) -> None:
        """Make ``root`` a DVC repository with the S3 remote (for a fresh git repository)."""
        if not (self.root / ".git").exists():
            raise DataVersionError(f"{self.root} is not a git repository (run `git init` first)")
        if not (self.root / ".dvc").is_dir():
            self.dvc("init", "--quiet")
        self.dvc("config", "core.analytics", "false")
        self.dvc("remote", "add", "--default", "--force", REMOTE, self.storage.dvc_url)
        self.dvc("remote", "modify", REMOTE, "endpointurl", self.storage.endpoint)
        paths = [".dvc/config", ".dvc/.gitignore", ".dvcignore"]
        self.git("add", *paths)
        if self.git("diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0:
            self.git("commit", "--quiet", "-m", "Track data/ with DVC (S3 remote)", "--", *paths)

    # -- versions -------------------------------------------------------------------------------------------
    def tags(self) -> list[tuple[int, str]]:
        """``(N, "data-vN")`` for every version tag, oldest first."""
        out = self.git("tag", "--list", f"{TAG_PREFIX}*").stdout.split()
        found = [(int(m.group(1)), t) for t in out if (m := _TAG_RE.match(t))]
        return sorted(found)

    def _validate_splits(self) -> list[Path]:
        from reviosa.data.format import InterRVOSDataset

        data = self.root / self.data_dir
        if not data.is_dir() or not any(data.iterdir()):
            raise DataVersionError(f"{data} is missing or empty; put one or more splits in it first")
        metas = sorted(data.rglob("meta_expressions.json"))
        for meta in metas:
            InterRVOSDataset.load(meta.parent, check_frames=True)  # DatasetError names the file and field
        return metas

    def snapshot(self, message: str, *, validate: bool = True) -> DataVersion:
        """``dvc add`` + ``dvc push`` + git commit + tag ``data-vN``; rerun after a failure to resume."""
        if not message.strip():
            raise DataVersionError("a snapshot needs a --message saying what changed")
        if validate:
            self._validate_splits()
        check_access(self.storage)  # wrong keys fail here with a clear message, not deep inside dvc push
        self.configure_remote()
        self.dvc("add", self.data_dir)
        md5 = parse_dvc_file(self.dvc_file.read_text())["md5"]
        existing = self.tags()
        if existing:
            last = existing[-1][1]
            prev = self.git("show", f"{last}:{self.dvc_file.name}", check=False)
            if prev.returncode == 0 and parse_dvc_file(prev.stdout)["md5"] == md5:
                raise DataVersionError(f"{self.data_dir}/ is unchanged since {last} (md5 {md5}); nothing to snapshot")
        # Push before committing: a tag must never point at data the remote does not hold. dvc push skips
        # objects already uploaded, so rerunning after an interrupted push resumes it.
        self.dvc("push", self.dvc_file.name)
        paths = [self.dvc_file.name] + [p for p in (".gitignore",) if (self.root / p).exists()]
        self.git("add", *paths)
        if self.git("diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0:
            self.git("commit", "--quiet", "-m", message, "--", *paths)
        n = (existing[-1][0] + 1) if existing else 1
        tag = f"{TAG_PREFIX}{n}"
        self.git("tag", "-a", tag, "-m", message)
        return self.version(tag)

    def version(self, tag: str, *, counts: bool = False) -> DataVersion:
        """Metadata of one version; ``counts`` also reads every split's ``meta_expressions.json`` from storage."""
        m = _TAG_RE.match(tag)
        if not m:
            raise DataVersionError(f"{tag!r} is not a data version tag (expected {TAG_PREFIX}N)")
        info = self.git("for-each-ref", f"refs/tags/{tag}",
                        "--format=%(*objectname)%00%(objectname)%00%(creatordate:iso-strict)%00%(contents:subject)")
        if not info.stdout.strip():
            known = ", ".join(t for _, t in self.tags()) or "none"
            raise DataVersionError(f"no such data version {tag!r} (known: {known})")
        peeled, obj, date, subject = info.stdout.rstrip("\n").split("\x00")
        out = parse_dvc_file(self.git("show", f"{tag}:{self.dvc_file.name}").stdout)
        ver = DataVersion(tag=tag, number=int(m.group(1)), commit=peeled or obj, date=date, message=subject,
                          md5=out["md5"], nfiles=int(out.get("nfiles", 0)), size=int(out.get("size", 0)))
        if counts:
            self._count(ver)
        return ver

    def list_versions(self, *, counts: bool = True) -> list[DataVersion]:
        """Every ``data-vN``, oldest first, with video/expression counts read without a checkout."""
        return [self.version(tag, counts=counts) for _, tag in self.tags()]

    def filesystem(self, rev: str):
        """A ``DVCFileSystem`` over the repository at ``rev`` (reads from cache, else from S3)."""
        from dvc.api import DVCFileSystem

        return DVCFileSystem(str(self.root), rev=rev, remote=REMOTE, remote_config=self.storage.dvc_remote_config())

    def _count(self, ver: DataVersion) -> None:
        fs = self.filesystem(ver.tag)
        metas = sorted(fs.glob(f"/{self.data_dir}/**/meta_expressions.json"))
        ver.videos = ver.expressions = 0
        for meta in metas:
            videos = json.loads(fs.read_text(meta)).get("videos", {})
            ver.videos += len(videos)
            ver.expressions += sum(len(v.get("expressions", {})) for v in videos.values())
            ver.splits.append(str(Path(meta).parent.relative_to(f"/{self.data_dir}")))

    def rollback(self, tag: str) -> DataVersion:
        """Restore ``data/`` and ``data.dvc`` to ``tag`` (pulling if the cache lacks it), then verify checksums."""
        ver = self.version(tag)
        self.configure_remote()
        self.git("checkout", tag, "--", self.dvc_file.name)
        # `dvc checkout` exits 0 even when the cache lacks the version, so the checksum check decides.
        self.dvc("checkout", "--force", self.dvc_file.name, check=False)
        try:
            self.verify(ver.md5)
        except DataVersionError:
            check_access(self.storage)
            self.dvc("pull", "--force", self.dvc_file.name)
            self.verify(ver.md5)
        return ver

    def verify(self, md5: str | None = None) -> int:
        """Check every file under ``data/`` against the version's manifest (md5s, no extra or missing files)."""
        md5 = md5 or parse_dvc_file(self.dvc_file.read_text())["md5"]
        digest = md5.removesuffix(".dir")
        manifest_path = self.root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / (digest[2:] + ".dir")
        try:
            manifest = {e["relpath"]: e["md5"] for e in json.loads(manifest_path.read_text())}
        except (OSError, ValueError) as err:
            raise DataVersionError(f"manifest {md5} is not in the DVC cache ({err}); run `dvc fetch`") from None
        data = self.root / self.data_dir
        actual = {p.relative_to(data).as_posix(): p for p in data.rglob("*") if p.is_file()}
        missing = sorted(set(manifest) - set(actual))
        extra = sorted(set(actual) - set(manifest))
        wrong = sorted(rel for rel in set(manifest) & set(actual) if file_md5(actual[rel]) != manifest[rel])
        if missing or extra or wrong:
            raise DataVersionError(f"{data} does not match {md5}: missing {missing[:5]}, extra {extra[:5]}, "
                                   f"changed {wrong[:5]}")
        return len(manifest)


def get_version(repo: str, rev: str, out: str | os.PathLike, storage: StorageConfig, path: str = "data") -> Path:
    """Download ``path`` at ``rev`` of ``repo`` (a folder or git URL) into ``out`` with no checkout needed."""
    return fetch_version(repo, rev, out, storage, path)[0]


def fetch_version(repo: str, rev: str, out: str | os.PathLike, storage: StorageConfig,
                  path: str = "data") -> tuple[Path, str]:
    """:func:`get_version` and the content hash of the DVC-tracked folder ``path`` lies in (``data/train``:
    ``data.dvc``'s md5; empty when that folder has no ``.dvc`` file), from one opening of ``repo`` at ``rev``."""
    from dvc.api import DVCFileSystem

    out = Path(out)
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise DataVersionError(f"output {out} exists and is not an empty folder")
        out.rmdir()  # fsspec copies *into* an existing folder, one level too deep
    # For a git URL this clones the repository: once for the files and the hash.
    fs = DVCFileSystem(repo, rev=rev, remote=REMOTE, remote_config=storage.dvc_remote_config())
    if not fs.exists(path):
        raise DataVersionError(f"{path!r} does not exist in {repo} at {rev}")
    fs.get(path, str(out), recursive=True)
    dvc_file = f"/{path.strip('/').split('/')[0]}.dvc"
    return out, parse_dvc_file(fs.read_text(dvc_file))["md5"] if fs.exists(dvc_file) else ""
