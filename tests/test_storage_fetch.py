"""S3 reads go through the storage config: endpoint and keys come from the YAML named by $REVIOSA_STORAGE_CONFIG
(keys from its credentials file), with no ``AWS_*`` variable in the environment, against the real test S3 server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reviosa.model.checkpoint import fetch as fetch_checkpoint
from reviosa.model.errors import CheckpointError
from reviosa.storage.config import StorageConfig
from reviosa.storage.errors import ObjectTooLargeError
from reviosa.storage.fetch import download, fetch, read_bytes


@pytest.fixture
def configured(s3_storage: StorageConfig, tmp_path: Path, monkeypatch) -> StorageConfig:
    """``s3_storage`` as the process's storage config, and no AWS_* variable anywhere in the environment."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    path = tmp_path / "storage.yaml"
    path.write_text(s3_storage.to_yaml())
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(path))
    monkeypatch.setenv("REVIOSA_CACHE", str(tmp_path / "cache"))
    assert s3_storage.credentials_file and not any(k.startswith("AWS_") for k in os.environ)
    return s3_storage


def test_fetch_caches_a_prefix_and_refetches_when_it_changes(configured: StorageConfig) -> None:
    fs, b = configured.s3fs(), configured.bucket
    fs.pipe({f"{b}/models/ckpt/config.yaml": b"name: tiny\n", f"{b}/models/ckpt/sub/w.bin": b"\x00\x01",
             f"{b}/models/ckpt2/other.bin": b"not part of ckpt"})
    first = fetch(f"s3://{b}/models/ckpt")
    assert first.name == "ckpt"
    assert sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file()) == ["config.yaml", "sub/w.bin"]
    assert (first / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    assert fetch(f"s3://{b}/models/ckpt/") == first  # cached: same objects, same copy
    fs.pipe(f"{b}/models/ckpt/config.yaml", b"name: changed\n")
    second = fetch(f"s3://{b}/models/ckpt")
    assert second != first and (second / "config.yaml").read_text() == "name: changed\n"
    single = fetch(f"s3://{b}/models/ckpt2/other.bin")
    assert single.is_file() and single.read_bytes() == b"not part of ckpt"
    with pytest.raises(FileNotFoundError, match="no such object or prefix"):
        fetch(f"s3://{b}/models/absent")
    with pytest.raises(CheckpointError, match="no such object or prefix"):  # the model package's view of it
        fetch_checkpoint(f"s3://{b}/models/absent")


def test_download_and_bounded_reads(configured: StorageConfig, tmp_path: Path) -> None:
    fs, b = configured.s3fs(), configured.bucket
    fs.pipe({f"{b}/split/a.json": b"{}", f"{b}/split/JPEGImages/v/0.jpg": b"jpg", f"{b}/videos/clip.mp4": b"x" * 100})
    out = download(f"s3://{b}/split", tmp_path / "out")
    assert (out / "a.json").read_bytes() == b"{}" and (out / "JPEGImages" / "v" / "0.jpg").read_bytes() == b"jpg"
    assert read_bytes(f"s3://{b}/videos/clip.mp4", 100) == b"x" * 100
    with pytest.raises(ObjectTooLargeError, match="100 bytes; the limit is 99"):
        read_bytes(f"s3://{b}/videos/clip.mp4", 99)
    with pytest.raises(FileNotFoundError):
        read_bytes(f"s3://{b}/videos/absent.mp4", 100)


def test_fetch_split_step_copies_an_s3_split(configured: StorageConfig, tmp_path: Path) -> None:
    from reviosa.pipelines import steps

    local = tmp_path / "split"
    stats = steps.synth_split(str(local), 1, seed=0, overrides=["frames=6", "height=48", "width=48"])
    configured.s3fs().put(str(local), f"{configured.bucket}/raw/split", recursive=True)
    fetched = steps.fetch_split(f"s3://{configured.bucket}/raw", str(tmp_path / "fetched"), path="split")
    assert fetched == stats


def test_an_object_key_cannot_write_outside_the_destination(tmp_path: Path) -> None:
    from reviosa.storage.fetch import _copy

    class Recorder:  # the one filesystem call _copy makes; the guard must refuse before it
        def __init__(self):
            self.written: list[str] = []

        def get_file(self, key: str, target: str) -> None:
            self.written.append(target)
            Path(target).write_text(key)

    fs = Recorder()
    objects = {"b/p/ok.txt": {}, "b/p/../../escape.txt": {}}
    with pytest.raises(ValueError, match="outside"):
        _copy(fs, "s3://b/p", objects, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert all(Path(t).resolve().is_relative_to((tmp_path / "dest").resolve()) for t in fs.written)
