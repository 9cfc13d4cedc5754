"""Provenance of every run: the code commit (and whether the tree was dirty), the DVC dataset version it read (as a
tag and an MLflow dataset input) and the experiment it lands in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pydantic import Field

from reviosa.config import Config
from reviosa.tracking.naming import (
    EXPERIMENT_KIND,
    TAG_DATA_MD5,
    TAG_DATA_NOTE,
    TAG_DATA_PATH,
    TAG_DATA_REPO,
    TAG_DATA_VERSION,
    TAG_EXPERIMENT_KIND,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    UNTRACKED,
)

#: set in the project image at build time (``--build-arg GIT_COMMIT=...``): a pod has no git checkout
COMMIT_ENV = "REVIOSA_GIT_COMMIT"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


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


def code_version() -> tuple[str | None, bool | None]:
    """The commit of the reviosa code running here and whether its tree was dirty (None where unknown).

    From ``$REVIOSA_GIT_COMMIT`` (the image's build argument), else from the checkout the package runs from; never
    from the working directory, which may be any other repository (the data's, for one).
    """
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV], None
    if not (_SOURCE_ROOT / ".git").exists():
        return None, None
    return git_commit(_SOURCE_ROOT)


class DataRef(Config):
    """The dataset version a run read: DVC tag and content hash, where it lives, or a note saying why there is none."""

    version: str | None = Field(None, description="the DVC version tag (data-vN) or git revision; None: untracked")
    md5: str | None = Field(None, description="content hash of the versioned folder (the .dvc file's md5)")
    repo: str = Field("", description="the git + DVC repository holding the version (URL or folder)")
    path: str = Field("", description="the split inside the repository, e.g. data/train")
    note: str = Field("", description="why the data is untracked")

    @property
    def name(self) -> str:
        """What the MLflow UI shows as the dataset: ``train@data-v2``."""
        split = Path(self.path).name or "data"
        return f"{split}@{self.version}" if self.version else f"{split} (untracked)"

    def tags(self) -> dict[str, str]:
        """Run tags: version (``untracked`` when there is none), hash, repository, path and the note."""
        tags = {TAG_DATA_VERSION: self.version or UNTRACKED, TAG_DATA_MD5: self.md5, TAG_DATA_REPO: self.repo,
                TAG_DATA_PATH: self.path, TAG_DATA_NOTE: self.note}
        return {k: v for k, v in tags.items() if v}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "DataRef":
        """The reference :meth:`tags` wrote."""
        version = tags.get(TAG_DATA_VERSION)
        return cls(version=None if version in (None, UNTRACKED) else version, md5=tags.get(TAG_DATA_MD5),
                   repo=tags.get(TAG_DATA_REPO, ""), path=tags.get(TAG_DATA_PATH, ""), note=tags.get(TAG_DATA_NOTE, ""))

    def dataset_input(self, context: str):
        """An MLflow ``DatasetInput`` whose source is the DVC repository at the version (``context``: training ...)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        if self.version:
            source = {"repo": self.repo, "rev": self.version, "path": self.path, "md5": self.md5}
            # MLflow keeps digests of at most 36 characters; the full hash is in the source.
            data = Dataset(self.name, (self.md5 or self.version).removesuffix(".dir")[:36], "dvc", json.dumps(source))
        else:
            data = Dataset(self.name, UNTRACKED, "local", json.dumps({"path": self.path, "note": self.note}))
        return DatasetInput(data, [InputTag(MLFLOW_DATASET_CONTEXT, context)])


def _origin(root: Path) -> str:
    """The repository as others can reach it: its ``origin`` URL, else the folder."""
    url = _git(root, "config", "--get", "remote.origin.url")
    return url or str(root)


def _dvc_differences(root: Path, dvc_file: str) -> str:
    """What ``dvc status`` reports for ``dvc_file`` (empty: the folder matches it)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", dvc_file], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if proc.returncode != 0:
        return f"`dvc status` failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    try:
        status = json.loads(proc.stdout or "{}")
    except ValueError:
        return f"`dvc status` printed no JSON: {proc.stdout.strip()[-300:]}"
    return json.dumps(status, sort_keys=True) if status else ""


def find_data_version(split: str | os.PathLike) -> DataRef:
    """The DVC version of the folder ``split`` as it is on disk: the ``data-vN`` tag whose ``data.dvc`` matches the
    working tree's, if ``dvc status`` finds the files unchanged. Otherwise an untracked reference whose note says why
    (outside any DVC-tracked folder, changed since the last snapshot, a hash no tag has)."""
    if "://" in str(split):
        return DataRef(path=str(split), note=f"{split} is a URI, not a DVC version (a pipeline passes tracking.data)")
    split = Path(split).resolve()
    for folder in (split, *split.parents):
        if folder.name and (folder.parent / f"{folder.name}.dvc").is_file() and \
                (_git(folder.parent, "rev-parse", "--show-toplevel") or "") == str(folder.parent):
            root, dvc_file = folder.parent, f"{folder.name}.dvc"
            break
    else:
        return DataRef(path=str(split), note=f"{split} is in no DVC-tracked folder of a git repository")
    rel = split.relative_to(root).as_posix()
    tag, md5 = dataset_version(root, dvc_file)
    repo = _origin(root)
    changed = _dvc_differences(root, dvc_file)
    if changed:
        return DataRef(md5=md5, repo=repo, path=rel,
                       note=f"{root / folder.name} differs from {dvc_file} ({changed[:300]}); snapshot it first")
    if tag is None:
        return DataRef(md5=md5, repo=repo, path=rel, note=f"{dvc_file} (md5 {md5}) matches no data-vN tag; "
                                                          "snapshot it (`reviosa data snapshot`)")
    return DataRef(version=tag, md5=md5, repo=repo, path=rel)


def run_tags(data: DataRef, source: str = "reviosa", job: bool = False) -> dict[str, str]:
    """Tags recorded on every run: what ran it (``source``; ``job``: a pipeline), code commit and dirty flag, dataset
    version, hash, repository and path."""
    sha, dirty = code_version()
    # MLflow's own keys: the run page shows them as the run's source, with the commit.
    tags = {"mlflow.source.name": source, "mlflow.source.type": "JOB" if job else "LOCAL", **data.tags()}
    if sha:
        tags[TAG_GIT_COMMIT] = sha
    if dirty is not None:
        tags[TAG_GIT_DIRTY] = str(dirty).lower()
    return tags


def ensure_experiment(client, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name`` (created if missing), marked as a model-training experiment for MLflow's UI."""
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location)
    if exp is None or exp.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND:
        client.set_experiment_tag(exp_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
    return exp_id


def log_data_input(client, run_id: str, data: DataRef, context: str) -> None:
    """Record ``data`` as the run's dataset input (``context``: training, validation or evaluation)."""
    client.log_inputs(run_id, datasets=[data.dataset_input(context)])
