"""MLflow for a training run (rank 0 only): dataset version, params, per-step metrics, validation, overlays, the final
model as a logged model."""

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

        from reviosa.tracking.context import DataRef, ensure_experiment, find_data_version, log_data_input, run_tags
        from reviosa.tracking.naming import TAG_KFP_RUN_NAME, TAG_KIND, TAG_RUN_NOTE

        self.cfg = cfg
        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        mlflow.set_tracking_uri(self.uri)
        run_file = Path(cfg.out) / RUN_FILE
        run_id = json.loads(run_file.read_text())["run_id"] if resume and run_file.is_file() else None
        if run_id is None:
            # A local store keeps its artifacts beside the database instead of in the working directory.
            where = (Path(cfg.out) / "mlartifacts").resolve().as_uri() if self.uri.startswith("sqlite") else None
            exp_id = ensure_experiment(self.client, cfg.tracking.experiment, artifact_location=where)
            self.data = cfg.tracking.data or find_data_version(cfg.data.train)
            kfp_run = cfg.tracking.tags.get(TAG_KFP_RUN_NAME)
            tags = {**run_tags(self.data, f"KFP run {kfp_run}" if kfp_run else "reviosa train", job=bool(kfp_run)),
                    TAG_KIND: "train", TAG_RUN_NOTE: run_description(cfg, self.data, kfp_run), **cfg.tracking.tags}
            run_id = self.client.create_run(exp_id, run_name=cfg.tracking.run_name or run_name(cfg, self.data),
                                            tags=tags).info.run_id
            atomic_write_text(run_file, json.dumps({"run_id": run_id, "tracking_uri": self.uri}))
            log_data_input(self.client, run_id, self.data, "training")
            if cfg.data.val and cfg.tracking.data is None:
                log_data_input(self.client, run_id, find_data_version(cfg.data.val), "validation")
            params = _params(cfg.flat_params())
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            self.client.log_text(run_id, cfg.to_yaml(), "config/train.yaml")
            self.client.log_text(run_id, cfg.model.to_yaml(), "config/model.yaml")
        else:
            self.data = DataRef.from_tags(self.client.get_run(run_id).data.tags)
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

    def model(self, directory: Path, step: int = 0) -> str:
        """Log a ``save_pretrained`` folder as the run's logged model (with the run's config and data version);
        returns its ``models:/`` URI."""
        from reviosa.tracking.registry import log_logged_model

        cfg = self.cfg
        params = {"steps": str(step or cfg.steps), "seg_tokens": str(not cfg.model.shared_seg_token).lower(),
                  "aml": str(bool(cfg.model.loss.aml_heads)).lower(), "init_from": cfg.init_from or ""}
        model = log_logged_model(self.client, self.run_id, directory, name=cfg.model.name, step=step,
                                 params=params, tags=self.data.tags(), files={"train_config.yaml": cfg.to_yaml()})
        return f"models:/{model.model_id}"

    def close(self, status: str = "FINISHED") -> None:
        """Stop the system-metrics thread and end the run."""
        if self._system is not None:
            self._system.finish()
        self.client.set_terminated(self.run_id, status)


def run_description(cfg: TrainConfig, data, kfp_run: str | None = None) -> str:
    """The run page's description: the model and Table-4 row, the dataset version it read and what launched it."""
    aml = "attention-mask loss on" if cfg.model.loss.aml_heads else "attention-mask loss off"
    tokens = "one shared [SEG] token" if cfg.model.shared_seg_token else "two tokens [SEG_ACT]/[SEG_TAR]"
    if data.version:
        where = f"`{data.path}` in {data.repo}" if data.repo else f"`{data.path}`"
        dataset = f"dataset version **{data.version}** (md5 {data.md5 or '?'}, {where})"
    else:
        dataset = f"untracked data ({data.note or 'no dataset version'})"
    return (f"Fine-tunes {cfg.model.name} ({aml}, {tokens}) on {dataset}; "
            + (f"launched by KFP run {kfp_run}." if kfp_run else "launched by `reviosa train`."))


def run_name(cfg: TrainConfig, data) -> str:
    """What ran: ``train-<model>-<aml|noaml>-<tokens|onetoken>-<data version>``, e.g. train-1b-aml-tokens-data-v2."""
    size = cfg.model.name.removeprefix("reviosa-")
    aml = "aml" if cfg.model.loss.aml_heads else "noaml"
    tokens = "onetoken" if cfg.model.shared_seg_token else "tokens"
    return f"train-{size}-{aml}-{tokens}-{data.version or 'untracked'}"


def _params(flat: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items()]
