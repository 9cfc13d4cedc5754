"""Dataset versions with the real dvc CLI and a real S3 server: snapshot, list, rollback, read without checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _splits import make_split
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.data.format import DatasetError
from reviosa.storage.config import StorageConfig
from reviosa.storage.dataversions import DataRepo, get_version
from reviosa.storage.errors import DataVersionError, StorageAuthError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def data_repo(git_repo: Path, s3_storage: StorageConfig) -> DataRepo:
    repo = DataRepo(git_repo, s3_storage)
    repo.init()
    return repo


def test_two_snapshots_then_rollback_is_byte_identical(data_repo: DataRepo, s3_storage: StorageConfig,
                                                       tmp_path: Path) -> None:
    data = data_repo.root / "data"
    make_split(data / "train")
    v1_files = _files(data)
    v1 = data_repo.snapshot("train split")
    assert (v1.tag, v1.nfiles) == ("data-v1", len(v1_files))

    make_split(data / "valid")
    (data / "train" / "mask_dict.json").write_text((data / "train" / "mask_dict.json").read_text() + "\n")
    v2 = data_repo.snapshot("add valid split")
    assert v2.tag == "data-v2" and v2.md5 != v1.md5

    # Rollback from an empty cache: everything must come back from S3.
    shutil.rmtree(data_repo.root / ".dvc" / "cache")
    data_repo.rollback("data-v1")
    assert _files(data) == v1_files  # same names, same bytes, and the valid/ split is gone
    assert data_repo.verify() == len(v1_files)

    versions = data_repo.list_versions()
    assert [(v.tag, v.videos, v.expressions, v.splits) for v in versions] == [
        ("data-v1", 2, 6, ["train"]), ("data-v2", 4, 12, ["train", "valid"])]
    assert [v.message for v in versions] == ["train split", "add valid split"]

    # Read v2 without touching the working tree (what a pipeline step does).
    out = get_version(str(data_repo.root), "data-v2", tmp_path / "v2", s3_storage)
    assert sorted(_files(out)) == sorted(f"{s}/{k.split('/', 1)[1]}" for s in ("train", "valid")
                                         for k in v1_files)
    assert _files(data) == v1_files


def test_verify_catches_tampering(data_repo: DataRepo) -> None:
    make_split(data_repo.root / "data" / "s")
    data_repo.snapshot("v1")
    (data_repo.root / "data" / "s" / "mask_dict.json").write_text("{}")
    (data_repo.root / "data" / "stray.txt").write_text("x")
    with pytest.raises(DataVersionError, match=r"extra \['stray.txt'\].*changed \['s/mask_dict.json'\]"):
        data_repo.verify()


def test_snapshot_refuses_bad_input(data_repo: DataRepo) -> None:
    with pytest.raises(DataVersionError, match="missing or empty"):
        data_repo.snapshot("nothing")
    make_split(data_repo.root / "data" / "s")
    with pytest.raises(DataVersionError, match="--message"):
        data_repo.snapshot("  ")
    data_repo.snapshot("v1")
    with pytest.raises(DataVersionError, match="unchanged since data-v1"):
        data_repo.snapshot("again")
    (data_repo.root / "data" / "s" / "meta_expressions.json").write_text('{"videos": {"v": {}}}')
    with pytest.raises(DatasetError):
        data_repo.snapshot("broken")
    with pytest.raises(DataVersionError, match="no such data version 'data-v7'"):
        data_repo.rollback("data-v7")
    assert [t for _, t in data_repo.tags()] == ["data-v1"]


def test_wrong_credentials_stop_snapshot_with_clear_error(data_repo: DataRepo, monkeypatch) -> None:
    make_split(data_repo.root / "data" / "s")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", data_repo.storage.credentials().access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageAuthError, match="rejected the credentials"):
        data_repo.snapshot("v1")
    assert data_repo.tags() == []


def test_cli_snapshot_list_rollback(git_repo: Path, s3_storage: StorageConfig, tmp_path: Path) -> None:
    DataRepo(git_repo, s3_storage).init()
    cfg = tmp_path / "storage.yaml"
    cfg.write_text(s3_storage.to_yaml())
    runner = CliRunner()
    make_split(git_repo / "data" / "a")
    first = _files(git_repo / "data")
    common = ["--repo", str(git_repo), "--config", str(cfg)]
    res = runner.invoke(app, ["data", "snapshot", "-m", "first", *common])
    assert res.exit_code == 0 and res.output.startswith("data-v1:"), res.output
    make_split(git_repo / "data" / "b")
    assert runner.invoke(app, ["data", "snapshot", "-m", "second", *common]).exit_code == 0
    listing = runner.invoke(app, ["data", "list", *common]).output.splitlines()
    assert listing[1].split()[0] == "data-v1" and listing[1].split()[3:6] == ["2", "6", "first"]
    assert listing[2].split()[0] == "data-v2" and listing[2].split()[3:6] == ["4", "12", "second"]
    res = runner.invoke(app, ["data", "rollback", "data-v1", *common])
    assert res.exit_code == 0 and "verified" in res.output, res.output
    assert _files(git_repo / "data") == first
    # Wrong credentials: exit 1 with the reason, no traceback.
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "someone", "AWS_SECRET_ACCESS_KEY": "wrong"}
    (git_repo / "data" / "c.txt").write_text("new")
    proc = subprocess.run([sys.executable, "-c", "from reviosa.cli import main; main()", "data", "snapshot", "-m",
                           "third", *common], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "rejected the credentials" in proc.stderr and "Traceback" not in proc.stderr


def test_shipped_dvc_setup_has_s3_remote_and_no_secrets() -> None:
    from dvc.config import Config

    conf = Config(dvc_dir=str(REPO_ROOT / ".dvc"), validate=False).load_one("repo")
    remote = conf["remote"][conf["core"]["remote"]]
    assert remote["url"].startswith("s3://") and "endpointurl" in remote
    assert not {"access_key_id", "secret_access_key"} & set(remote)
    assert "/config.local" in (REPO_ROOT / ".dvc" / ".gitignore").read_text().split()
    assert "path: data" in (REPO_ROOT / "data.dvc").read_text()


def test_shipped_dvc_setup_snapshots_in_a_clone(s3_storage: StorageConfig, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO_ROOT}", str(clone)], check=True)
    for argv in (["config", "user.email", "test@example.com"], ["config", "user.name", "reviosa tests"]):
        subprocess.run(["git", *argv], cwd=clone, check=True)
    make_split(clone / "data" / "synthetic")
    expected = _files(clone / "data")
    repo = DataRepo(clone, s3_storage)  # endpoint goes to .dvc/config.local, keys stay in the environment
    ver = repo.snapshot("synthetic split")
    assert ver.tag == "data-v1" and ver.nfiles == len(expected)
    assert "secret" not in (clone / ".dvc" / "config.local").read_text()
    changed = subprocess.run(["git", "show", "--name-only", "--format=", "HEAD"], cwd=clone, capture_output=True,
                             text=True).stdout.split()
    assert changed == ["data.dvc"]
    shutil.rmtree(clone / "data")
    shutil.rmtree(clone / ".dvc" / "cache")
    repo.rollback("data-v1")
    assert _files(clone / "data") == expected
