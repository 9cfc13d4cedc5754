"""``reviosa services up|down|status|env``: the local S3 + MLflow stack on 127.0.0.1."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

services_app = typer.Typer(help="Local S3 (SeaweedFS) and MLflow servers on 127.0.0.1.", no_args_is_help=True)
_STATE = typer.Option(None, "--state-dir", help="State folder (default: .reviosa/ at the repository root)")


def register(app: typer.Typer) -> None:
    """Attach the ``services`` verb group."""
    app.add_typer(services_app, name="services")


@services_app.command("up")
def up(s3_port: int = typer.Option(8333, help="S3 port (0 = any free port)"),
       mlflow_port: int = typer.Option(5000, help="MLflow port (0 = any free port)"),
       mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Also start the MLflow server"),
       state_dir: Path | None = _STATE) -> None:
    """Start the stack (idempotent); credentials are generated once and kept in the state folder."""
    from reviosa.services import stack
    from reviosa.storage.errors import StorageError

    try:
        st = stack.up(state_dir, s3_port=s3_port, mlflow_port=mlflow_port, with_mlflow=mlflow)
    except (StorageError, RuntimeError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    for name, srv in st.servers.items():
        typer.echo(f"{name:7s} {srv.url}  (pid {srv.pid})")
    typer.echo(f"storage config: {st.services_dir / 'storage.yaml'}")


@services_app.command("down")
def down(state_dir: Path | None = _STATE) -> None:
    """Stop every server the state folder records (default: also those of the stacks it lists, e.g. the demo's)."""
    from reviosa.services import stack

    stopped = stack.down(state_dir)
    others = {} if state_dir else stack.registered_stacks()
    if stopped or not others:
        typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    for root, label in others.items():
        names = stack.down(root)
        typer.echo(f"stopped ({label}, {root}): {', '.join(names) if names else 'nothing was running'}")


def _print_status(info: dict[str, dict], indent: str = "") -> bool:
    ok = True
    for name, s in info.items():
        state = "up" if s["answering"] else ("starting/hung" if s["alive"] else "down")
        ok &= s["answering"]
        typer.echo(f"{indent}{name:7s} {state:13s} {s['url']}  pid {s['pid']}  log {s['log']}")
    return ok


@services_app.command("status")
def status(state_dir: Path | None = _STATE) -> None:
    """Show each server's URL and health (default: also the stacks the state folder lists, e.g. the demo's); exit 1
    if any recorded server is down."""
    from reviosa.services import stack

    info = stack.status(state_dir)
    others = {} if state_dir else stack.registered_stacks()
    if not info and not others:
        typer.echo("no services recorded (run `reviosa services up`)")
        raise typer.Exit(1)
    ok = _print_status(info)
    for root, label in others.items():
        typer.echo(f"{label} (state folder {root}; `reviosa services down` stops it):")
        ok &= _print_status(stack.status(root), "  ")
    if not ok:
        raise typer.Exit(1)


@services_app.command("env")
def env(state_dir: Path | None = _STATE) -> None:
    """Print ``export`` lines for the stack (``eval "$(reviosa services env)"``)."""
    from reviosa.services import stack

    st = stack.load_state(state_dir)
    if "s3" not in st.servers:
        typer.secho("no S3 server recorded (run `reviosa services up`)", fg="red", err=True)
        raise typer.Exit(1)
    values = dict(st.storage.client_env(env={}))
    values["REVIOSA_STORAGE_CONFIG"] = str(st.services_dir / "storage.yaml")
    if st.tracking_uri:
        values["MLFLOW_TRACKING_URI"] = st.tracking_uri
    for k, v in values.items():
        typer.echo(f"export {k}={shlex.quote(v)}")
