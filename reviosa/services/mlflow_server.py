"""The cluster's MLflow server entry point: secrets are read from mounted files, never from the command line.

``python -m reviosa.services.mlflow_server --backend-store-uri 'postgresql+psycopg2://{POSTGRES_USER}:
{POSTGRES_PASSWORD}@postgres:5432/{POSTGRES_DB}' --database-secret-dir /var/run/reviosa/postgres ...`` fills the
placeholders from the files of a mounted Secret (URL-quoted, so any password works), puts the result in
``$MLFLOW_BACKEND_STORE_URI``, writes the basic-auth config (mode 0600, under ``--work-dir``), makes sure the client
account exists with the password in its Secret, and replaces itself with ``mlflow server --app-name basic-auth``.
Kubernetes' ``$(VAR)`` expansion would have put the password into the process's argv, which any process on the
node can read in /proc; the environment is readable by the same user only.
"""

from __future__ import annotations

import argparse
import configparser
import os
import string
import sys
from pathlib import Path
from urllib.parse import quote

from reviosa.services.mlflow import SERVER_ENV, MlflowServerConfig
from reviosa.storage.config import ACCESS_KEY_ENV, SECRET_KEY_ENV, load_storage_config

ADMIN_USERNAME, ADMIN_PASSWORD = "MLFLOW_ADMIN_USERNAME", "MLFLOW_ADMIN_PASSWORD"
# Signs the UI's CSRF tokens; every replica needs the same one, so it lives in the Secret too.
FLASK_SECRET = "MLFLOW_FLASK_SERVER_SECRET_KEY"
# The standard client variables: the same Secret serves the pipeline steps (as env) and this server (as files).
CLIENT_USERNAME, CLIENT_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def read_secret_dir(folder: str | Path, keys: list[str]) -> dict[str, str]:
    """The values of ``keys`` from a mounted Secret folder (one file per key, trailing newline dropped)."""
    folder = Path(folder)
    missing = [k for k in keys if not (folder / k).is_file()]
    if missing:
        raise SystemExit(f"secret folder {folder} lacks {', '.join(missing)}")
    return {k: (folder / k).read_text().rstrip("\n") for k in keys}


def fill_uri(template: str, secret_dir: str | Path | None) -> str:
    """``template`` with each ``{KEY}`` replaced by the URL-quoted content of file ``KEY`` in ``secret_dir``."""
    keys = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not keys:
        return template
    if secret_dir is None:
        raise SystemExit(f"--backend-store-uri names {', '.join(keys)} but no --database-secret-dir was given")
    values = read_secret_dir(secret_dir, keys)
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})


def write_auth_config(path: Path, database_uri: str, default_permission: str) -> None:
    """The basic-auth app's ini (it holds the database URI, so only this user may read it)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["mlflow"] = {"default_permission": default_permission, "database_uri": database_uri,
                     "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        cfg.write(fh)


def ensure_user(database_uri: str, username: str, password: str) -> None:
    """Create the non-admin account ``username`` or reset its password to the one in its Secret."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_uri)  # runs the auth schema migrations, as the server would
    if not store.has_user(username, use_primary=True):
        try:
            store.create_user(username, password, is_admin=False)
            return
        except MlflowException:
            if not store.has_user(username, use_primary=True):  # not a replica starting at the same moment
                raise
    store.update_user(username, password=password)


def prepare(args: argparse.Namespace, environ: dict[str, str]) -> tuple[list[str], dict[str, str], tuple | None]:
    """The ``mlflow server`` argv and environment for ``args`` and the client account (user, password) to ensure;
    writes the auth config."""
    uri = fill_uri(args.backend_store_uri, args.database_secret_dir)
    env = {**environ, **SERVER_ENV, "MLFLOW_BACKEND_STORE_URI": uri}
    storage = load_storage_config(args.storage_config)
    if args.s3_secret_dir:
        # boto3 in the server reads its variables, derived here from the same storage.yaml every client reads.
        env.update(storage.client_env(env=read_secret_dir(args.s3_secret_dir, [ACCESS_KEY_ENV, SECRET_KEY_ENV])))
    app_name = None
    if args.auth_secret_dir:
        admin = read_secret_dir(args.auth_secret_dir, [ADMIN_USERNAME, ADMIN_PASSWORD, FLASK_SECRET])
        auth_ini = Path(args.work_dir) / "basic_auth.ini"
        write_auth_config(auth_ini, uri, args.default_permission)
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str(auth_ini), "MLFLOW_AUTH_ADMIN_USERNAME": admin[ADMIN_USERNAME],
                    "MLFLOW_AUTH_ADMIN_PASSWORD": admin[ADMIN_PASSWORD], FLASK_SECRET: admin[FLASK_SECRET]})
        app_name = "basic-auth"
    client = None
    if app_name and args.client_secret_dir:
        values = read_secret_dir(args.client_secret_dir, [CLIENT_USERNAME, CLIENT_PASSWORD])
        client = (values[CLIENT_USERNAME], values[CLIENT_PASSWORD])
    cfg = MlflowServerConfig(backend_store_uri=None, host=args.host, port=args.port, workers=args.workers,
                             allowed_hosts=args.allowed_hosts.split(",") if args.allowed_hosts else [],
                             app_name=app_name)
    return cfg.argv(storage), env, client


def parser() -> argparse.ArgumentParser:
    """Command-line options (paths and settings only: no secret is ever an argument)."""
    p = argparse.ArgumentParser(prog="python -m reviosa.services.mlflow_server", description=__doc__.split("\n")[0])
    p.add_argument("--backend-store-uri", required=True, help="URI with {KEY} placeholders for secret files")
    p.add_argument("--database-secret-dir", help="mounted Secret with the placeholders' values")
    p.add_argument("--s3-secret-dir", help="mounted Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    p.add_argument("--auth-secret-dir", help=f"mounted Secret with {ADMIN_USERNAME}, {ADMIN_PASSWORD} and "
                                             f"{FLASK_SECRET}: turns on the basic-auth app")
    p.add_argument("--client-secret-dir", help=f"mounted Secret with {CLIENT_USERNAME} and {CLIENT_PASSWORD}: "
                                               "the non-admin account the pipelines use")
    p.add_argument("--default-permission", default="READ", help="what any signed-in user may do by default")
    p.add_argument("--storage-config", help="StorageConfig file (default: $REVIOSA_STORAGE_CONFIG)")
    p.add_argument("--work-dir", default="/tmp/mlflow-auth", help="private folder for the generated auth config")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--allowed-hosts", default="", help="comma-separated Host header patterns")
    return p


def main(argv: list[str] | None = None) -> None:
    """Prepare and exec ``mlflow server`` (this process becomes the server, so signals reach it directly)."""
    argv, env, client = prepare(parser().parse_args(argv), dict(os.environ))
    if client:
        ensure_user(env["MLFLOW_BACKEND_STORE_URI"], *client)
    os.execvpe(sys.executable, [sys.executable, "-m", *argv], env)


if __name__ == "__main__":
    main()
