"""``reviosa data snapshot|list|rollback|get``: dataset versions with DVC in S3."""

from __future__ import annotations

from pathlib import Path

import typer

from reviosa.cli.data import data_app

_CONFIG = typer.Option(None, "--config", help="Storage config, YAML path or shipped name (default: "
                                             "$REVIOSA_STORAGE_CONFIG, else the local stack's, else the shipped one)")
_ROOT = typer.Option(None, "--repo", help="Git + DVC repository holding data/ and data.dvc (default: the one "
                                           "containing the working directory)")


def register(app: typer.Typer) -> None:
    """Commands join the existing ``data`` group (registered by ``reviosa.cli.data``)."""


def _storage(config: Path | None):
    from reviosa.config import ConfigError
    from reviosa.storage.config import load_storage_config

    try:
        return load_storage_config(config)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None


def _repo(root: Path | None, config: Path | None):
    from reviosa.storage.config import repo_root
    from reviosa.storage.dataversions import DataRepo

    return DataRepo(root or repo_root(), _storage(config))


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg="red", err=True)
    raise typer.Exit(1) from None


@data_app.command("snapshot")
def snapshot(message: str = typer.Option(..., "--message", "-m", help="What changed in this version"),
             no_validate: bool = typer.Option(False, "--no-validate", help="Skip loading every split first"),
             repo: Path | None = _ROOT, config: Path | None = _CONFIG) -> None:
    """Version data/: dvc add + push to S3, commit data.dvc, tag data-vN (rerun to resume a failed push)."""
    from reviosa.data.format import DatasetError
    from reviosa.storage.errors import StorageError

    try:
        ver = _repo(repo, config).snapshot(message, validate=not no_validate)
    except (StorageError, DatasetError) as err:
        _fail(err)
    typer.echo(f"{ver.tag}: {ver.nfiles} files, {ver.size} bytes, md5 {ver.md5} (commit {ver.commit[:10]})")


@data_app.command("list")
def list_versions(repo: Path | None = _ROOT, config: Path | None = _CONFIG,
                  no_counts: bool = typer.Option(False, "--no-counts",
                                                 help="Skip reading meta_expressions.json")) -> None:
    """List data-vN versions with dates, file counts and video/expression counts."""
    from reviosa.storage.errors import StorageError

    try:
        versions = _repo(repo, config).list_versions(counts=not no_counts)
    except StorageError as err:
        _fail(err)
    if not versions:
        typer.echo("no data versions yet (run `reviosa data snapshot -m ...`)")
        return
    typer.echo(f"{'version':9s} {'date':25s} {'files':>6s} {'videos':>6s} {'exprs':>6s}  message")
    for v in versions:
        typer.echo(f"{v.tag:9s} {v.date:25s} {v.nfiles:6d} {v.videos if v.videos is not None else '-':>6} "
                   f"{v.expressions if v.expressions is not None else '-':>6}  {v.message}")


@data_app.command("rollback")
def rollback(tag: str = typer.Argument(..., help="Version tag, e.g. data-v1"), repo: Path | None = _ROOT,
             config: Path | None = _CONFIG) -> None:
    """Restore data/ and data.dvc to a version (pulling from S3 if needed) and verify every checksum."""
    from reviosa.storage.errors import StorageError

    try:
        ver = _repo(repo, config).rollback(tag)
    except StorageError as err:
        _fail(err)
    typer.echo(f"data/ now matches {ver.tag} ({ver.nfiles} files verified, md5 {ver.md5}); "
               "data.dvc is staged: commit it to record the rollback")


@data_app.command("get")
def get(rev: str = typer.Argument(..., help="Version tag or git revision"),
        out: Path = typer.Argument(..., help="Empty or new output folder"),
        repo: str = typer.Option(".", "--repo", help="Repository folder or git URL"),
        path: str = typer.Option("data", "--path", help="Path inside the repository"),
        config: Path | None = _CONFIG) -> None:
    """Download a version without checking it out (for pipeline steps)."""
    from reviosa.storage.dataversions import get_version
    from reviosa.storage.errors import StorageError

    storage = _storage(config)
    try:
        get_version(repo, rev, out, storage, path)
    except StorageError as err:
        _fail(err)
    typer.echo(f"{path}@{rev} -> {out}")
