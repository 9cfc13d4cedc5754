"""``reviosa pipeline``: compile the Kubeflow pipelines, submit one to a KFP server, or run one locally."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the pipeline commands."""
    group = typer.Typer(help="Kubeflow pipelines: compile, submit, run-local.", no_args_is_help=True)
    group.command("compile")(compile_specs)
    group.command("submit")(submit)
    group.command("run-local")(run_local)
    app.add_typer(group, name="pipeline")


def _params(items: list[str] | None) -> dict:
    """``key=value`` pairs; values read as YAML scalars (``3`` → int, ``true`` → bool, ``1b`` → str)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        parsed = yaml.safe_load(value) if value else ""
        out[key] = parsed if isinstance(parsed, (int, float, bool, str)) else value
    return out


def compile_specs(out: Path = typer.Option(Path("build/pipelines"), "--out", help="Folder for the YAML specs"),
                  name: list[str] = typer.Option(None, "--name", help="Only these pipelines (repeatable)")) -> None:
    """Compile the pipelines (annotation, training, evaluation, end-to-end) to KFP v2 YAML."""
    from reviosa.pipelines.compile import PIPELINES, compile_pipeline

    for n in name or list(PIPELINES):
        if n not in PIPELINES:
            raise typer.BadParameter(f"unknown pipeline {n!r} (known: {', '.join(PIPELINES)})", param_hint="--name")
        typer.echo(f"{n}: {compile_pipeline(n, out)}")


def submit(host: str = typer.Option(..., "--host", help="KFP API server URL, e.g. http://127.0.0.1:8888"),
           pipeline: str = typer.Option("end-to-end", "--pipeline", help="Pipeline name (compiled on the fly)"),
           spec: Path = typer.Option(None, "--spec", help="A compiled YAML instead of --pipeline"),
           param: list[str] = typer.Option(None, "--param", help="Run parameter key=value (repeatable)"),
           experiment: str = typer.Option("reviosa", "--experiment"),
           run_name: str = typer.Option(None, "--run-name"),
           token_env: str = typer.Option("KFP_TOKEN", "--token-env", help="Environment variable with a bearer token"),
           no_cache: bool = typer.Option(False, "--no-cache", help="Disable execution caching for this run")) -> None:
    """Upload a pipeline (new version if it exists) and start a run on a KFP server."""
    import os
    import tempfile

    from reviosa.pipelines.compile import PIPELINES, compile_pipeline
    from reviosa.pipelines.submit import SubmitError
    from reviosa.pipelines.submit import submit as do_submit

    if spec is None:
        if pipeline not in PIPELINES:
            raise typer.BadParameter(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})",
                                     param_hint="--pipeline")
        spec = compile_pipeline(pipeline, tempfile.mkdtemp(prefix="reviosa-spec-"))
    try:
        info = do_submit(host, spec, _params(param), experiment=experiment, run_name=run_name,
                         pipeline_name=f"reviosa-{spec.stem}", token=os.environ.get(token_env) or None,
                         enable_caching=False if no_cache else None)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="--spec") from None
    except SubmitError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


def run_local(pipeline: str = typer.Option("evaluation", "--pipeline", help="Pipeline name"),
              param: list[str] = typer.Option(None, "--param", help="Pipeline parameter key=value (repeatable)"),
              root: Path = typer.Option(Path("runs/kfp-local"), "--root",
                                        help="Folder for the run's artefacts")) -> None:
    """Run a pipeline on this machine with kfp.local (subprocess per step, GPU/K8s settings ignored)."""
    from reviosa.pipelines.compile import PIPELINES
    from reviosa.pipelines.local import run_local as do_run

    if pipeline not in PIPELINES:
        raise typer.BadParameter(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})",
                                 param_hint="--pipeline")
    outputs = do_run(pipeline, _params(param), root)
    typer.echo(f"{pipeline}: finished; artefacts under {root.resolve()}")
    for key, value in outputs.items():
        typer.echo(f"  {key}: {getattr(value, 'path', value)}")
