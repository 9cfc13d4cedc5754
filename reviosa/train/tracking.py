"""MLflow for a training run (rank 0 only): params, per-step metrics, validation, overlays, the final model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reviosa.data.atomic import atomic_write_text
from reviosa.train.config import TrainConfig

RUN_FILE = "mlflow_run.json"


def tracking_uri(cfg: TrainConfig) -> str:
    """Config URI, else ``$MLFLOW_TRACKING_URI``, else a sqlite store in the run's output folder."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(cfg.out) / 'mlflow.db').resolve()}"


class RunLogger:
    """One MLflow run, reopened on ``--resume`` (its id is kept in the output folder)."""

    def __init__(self, cfg: TrainConfig, resume: bool):
        """Open (or on ``resume`` reopen) the run."""
        import mlflow
        from mlflow import MlflowClient

        from reviosa.tracking.context import run_tags
        from reviosa.tracking.naming import TAG_KIND

        self.cfg = cfg
        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        mlflow.set_tracking_uri(self.uri)
        run_file = Path(cfg.out) / RUN_FILE
        run_id = json.loads(run_file.read_text())["run_id"] if resume and run_file.is_file() else None
        if run_id is None:
            exp = self.client.get_experiment_by_name(cfg.tracking.experiment)
            if exp is None:
                # A local store keeps its artifacts beside the database instead of in the working directory.
                where = (Path(cfg.out) / "mlartifacts").resolve().as_uri() if self.uri.startswith("sqlite") else None
                exp_id = self.client.create_experiment(cfg.tracking.experiment, artifact_location=where)
            else:
                exp_id = exp.experiment_id
            tags = {**run_tags(), TAG_KIND: "train"}
            run_id = self.client.create_run(exp_id, run_name=cfg.tracking.run_name, tags=tags).info.run_id
            atomic_write_text(run_file, json.dumps({"run_id": run_id, "tracking_uri": self.uri}))
            params = _params(cfg.flat_params())
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            self.client.log_text(run_id, cfg.to_yaml(), "config/train.yaml")
            self.client.log_text(run_id, cfg.model.to_yaml(), "config/model.yaml")
        self.run_id = run_id
        self._system = None
        if cfg.tracking.system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._system = SystemMetricsMonitor(run_id, sampling_interval=cfg.tracking.system_metrics_interval,
                                                    samples_before_logging=1, resume_logging=resume)
                self._system.start()
            except Exception as err:  # noqa: BLE001 - system metrics are optional (psutil/NVML may be absent)
                print(f"system metrics off: {err}")
                self._system = None

    def metrics(self, values: dict[str, float], step: int) -> None:
        """Log a dict of metrics at a step."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def artifacts(self, paths: list[Path], folder: str) -> None:
        """Upload files into a run folder."""
        for p in paths:
            self.client.log_artifact(self.run_id, str(p), folder)

    def model(self, directory: Path) -> str:
        """Log a ``save_pretrained`` folder as the run's model files; returns its ``runs:/`` URI."""
        from reviosa.tracking.registry import log_model_files

        return log_model_files(self.client, self.run_id, [directory])

    def close(self, status: str = "FINISHED") -> None:
        """Stop the system-metrics thread and end the run."""
        if self._system is not None:
            self._system.finish()
        self.client.set_terminated(self.run_id, status)


def _params(flat: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items()]
