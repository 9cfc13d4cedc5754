"""Log one evaluation as an MLflow run: per-role J/F/JF metrics, the per-expression table, plots and overlay GIFs."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from reviosa.tracking.config import client as make_client
from reviosa.tracking.context import DataRef, ensure_experiment, find_data_version, run_tags
from reviosa.tracking.naming import TAG_KFP_RUN_NAME, TAG_KIND, experiment_name, metric_key

Rows = Sequence[Mapping[str, Any]]


def load_rows(table: str | os.PathLike | Rows) -> list[dict[str, Any]]:
    """Rows of a per-expression table given as rows, a ``.csv`` file or a ``.json`` list of objects."""
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        elif path.suffix == ".json":
            rows = json.loads(path.read_text())
        else:
            raise ValueError(f"per-expression table {path} must be .csv or .json")
    else:
        rows = [dict(r) for r in table]
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("per-expression table must be a non-empty list of rows (mappings)")
    keys = list(rows[0])
    bad = [i for i, r in enumerate(rows) if list(r) != keys]
    if bad:
        raise ValueError(f"per-expression rows {bad[:5]} do not have the columns of row 0 {keys}")
    return [dict(r) for r in rows]


def mlflow_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metric mapping with MLflow-safe keys and float values; colliding or non-numeric entries raise."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        key = metric_key(name)
        if key in out:
            raise ValueError(f"metrics {name!r} and another name both map to MLflow key {key!r}")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {name!r} = {value!r} is not a number") from None
        if math.isinf(out[key]):
            raise ValueError(f"metric {name!r} is infinite")
    return out


def log_evaluation(metrics: Mapping[str, Any], *, dataset: str, run_name: str | None = None,
                   params: Mapping[str, Any] | None = None, per_expression: str | os.PathLike | Rows | None = None,
                   plots: Sequence[str | os.PathLike] = (), gifs: Sequence[str | os.PathLike] = (),
                   data: DataRef | None = None, model_id: str | None = None, tags: Mapping[str, str] | None = None,
                   tracking_uri: str | None = None, repo_root: str | os.PathLike | None = None) -> str:
    """Create a run in ``reviosa/eval/<dataset>`` holding the evaluation; return its run id.

    ``metrics`` is whatever the evaluator returns (``actor_J``, ``rvos_J&F``, ...); keys are made MLflow-safe.
    The run carries the code commit and the dataset version it read (``data``; default: the DVC version of
    ``<repo_root>/data`` on disk) as tags and as its dataset input, so every number traces to code and data. With
    ``model_id`` the scores are the logged model's too (its page lists them) and the model is the run's input.
    """
    from mlflow.entities import LoggedModelInput, Metric, Param, RunStatus

    values = mlflow_metrics(metrics)
    rows = load_rows(per_expression) if per_expression is not None else None
    files = [(Path(p), "plots") for p in plots] + [(Path(p), "overlays") for p in gifs]
    missing = [str(p) for p, _ in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"artifact files not found: {missing}")

    client = make_client(tracking_uri)
    name = experiment_name("eval", dataset)
    exp_id = ensure_experiment(client, name)
    data = data or find_data_version(Path(repo_root or Path.cwd()) / "data")
    kfp_run = (tags or {}).get(TAG_KFP_RUN_NAME)
    all_tags = run_tags(data, f"KFP run {kfp_run}" if kfp_run else "reviosa evaluate", job=bool(kfp_run))
    all_tags[TAG_KIND] = "eval"
    all_tags.update(tags or {})
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    try:
        import time

        now = int(time.time() * 1000)
        client.log_inputs(run_id, datasets=[data.dataset_input("evaluation")],
                          models=[LoggedModelInput(model_id)] if model_id else None)
        scored = data.dataset_input("evaluation").dataset
        on_model = {"model_id": model_id, "dataset_name": scored.name, "dataset_digest": scored.digest} \
            if model_id else {}
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0, **on_model) for k, v in values.items()],
                         params=[Param(k, str(v)) for k, v in (params or {}).items()])
        if rows is not None:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            client.log_text(run_id, buf.getvalue(), "tables/per_expression.csv")
            # The JSON table form is what the MLflow UI renders as a sortable table.
            client.log_table(run_id, data={k: [r[k] for r in rows] for k in rows[0]},
                             artifact_file="tables/per_expression.json")
        for path, folder in files:
            client.log_artifact(run_id, str(path), folder)
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id)
    return run_id
