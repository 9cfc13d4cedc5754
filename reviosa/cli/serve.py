"""``reviosa serve``: the KServe predictor on this machine (loopback by default), v1 and v2 REST."""

from __future__ import annotations

import typer

from reviosa.cli.options import SET_HELP, load_config


def register(app: typer.Typer) -> None:
    """Attach the serve command."""
    app.command("serve")(serve)


def serve(model: str = typer.Option(None, "--model", help="Checkpoint folder or s3:// URI (save_pretrained)"),
          config: str = typer.Option("default", "--config", help="ServeConfig: shipped name or YAML path"),
          set_: list[str] = typer.Option([], "--set", help=SET_HELP),
          port: int = typer.Option(None, "--port", help="HTTP port (default 8080)"),
          host: str = typer.Option("127.0.0.1", "--host", help="Bind address; 0.0.0.0 only inside a pod"),
          name: str = typer.Option(None, "--name", help="Model name in the URLs (default reviosa)"),
          allow_url: list[str] = typer.Option(None, "--allow-url",
                                              help="URL prefix requests may name as video_uri (repeatable)"),
          allow_host: list[str] = typer.Option(None, "--allow-host",
                                               help="Host header served besides 127.0.0.1/localhost:PORT, e.g. "
                                                    "a Service name (repeatable; replaces allowed_hosts)"),
          max_frames: int = typer.Option(None, "--max-frames"),
          device: str = typer.Option(None, "--device")) -> None:
    """Serve a ReVIOSa checkpoint: POST /v2/models/<name>/infer or /v1/models/<name>:predict; GET .../ready."""
    import logging

    from reviosa.config import ConfigError
    from reviosa.model.errors import CheckpointError
    from reviosa.serve.server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = serve_config(model, config, set_, port, host, name, allow_url, max_frames, device, allow_host)
    try:
        run_server(cfg)
    except CheckpointError as err:
        raise typer.BadParameter(str(err), param_hint="--model") from None
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--allow-url") from None


def serve_config(model, config, set_, port, host, name, allow_url, max_frames, device, allow_host=None):
    """The ServeConfig the command's options name (the flags are shorthand for ``--set``; ``--set`` wins)."""
    from reviosa.serve.config import ServeConfig

    return load_config(ServeConfig, config, set_, {"model_uri": model, "http_port": port, "host": host,
                                                   "model_name": name, "allowed_url_prefixes": allow_url or None,
                                                   "max_frames": max_frames, "device": device,
                                                   "allowed_hosts": allow_host or None})
