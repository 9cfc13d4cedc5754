"""The embedded default: the end-to-end pipeline on this machine, from synthetic videos to a served model.

Local S3 (SeaweedFS) and MLflow are started for the run, a throw-away git+DVC repository holds the dataset
versions, the pipeline runs under ``kfp.local``, and the registered model is then served by ``reviosa serve``
on 127.0.0.1 and queried once. Entry point: :func:`run_end_to_end`; :func:`run_with_stages` is the same run as
``reviosa demo`` shows it, one line per stage with everything else in ``<out>/demo.log``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import Field

from reviosa.config import Config
from reviosa.pipelines.console import Stages, follow, output_to_log, strip_ansi, tail

LOG_NAME = "demo.log"


class DemoConfig(Config):
    """Sizes of the local run: small enough for a few CPU minutes (``configs/demo.yaml``)."""

    shipped_dir = Path(__file__).with_name("configs")

    train_videos: int = Field(24, ge=1, description="synthetic training videos")
    val_videos: int = Field(4, ge=1, description="held-out synthetic videos")
    frames: int = Field(8, ge=6, description="frames per video")
    size: int = Field(64, ge=48, description="frame side in pixels")
    steps: int = Field(300, ge=1, description="optimizer steps of the tiny model")
    seed: int = Field(0, description="seed of the synthetic world and of training")
    model_name: str = Field("reviosa-demo", description="registered model name")
    keep_services: bool = Field(False, description="leave S3 and MLflow running afterwards")


@dataclass
class DemoResult:
    """Where everything is, plus the scores and the served answer."""

    out: str
    tracking_uri: str
    pipeline_root: str
    data_repo: str
    model_version: str = ""
    train_run_id: str = ""
    eval_run_id: str = ""
    model_id: str = ""
    data_version: str = ""
    stack: str = ""
    metrics: dict = field(default_factory=dict)
    served: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


class DemoFailed(RuntimeError):
    """The demo stopped; the message says where, why (the end of the log) and where the whole log is."""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)


def _data_repo(root: Path, storage) -> Path:
    """A fresh git repository with DVC pointing at the local S3 (the pipeline's snapshot target)."""
    from reviosa.storage.dataversions import DataRepo

    if not (root / ".git").exists():
        root.mkdir(parents=True, exist_ok=True)
        _git(root, "init", "--quiet")
        _git(root, "config", "user.email", "demo@reviosa.invalid")
        _git(root, "config", "user.name", "reviosa demo")
        (root / "README.md").write_text("Dataset versions of the reviosa local demo.\n")
        _git(root, "add", "README.md")
        _git(root, "commit", "--quiet", "-m", "demo data repository")
    DataRepo(root, storage).init()
    return root


def _query(url: str, name: str, frames, expression: str) -> dict:
    """One v2 inference request with base64 PNG frames; returns a short summary of the answer."""
    from PIL import Image

    encoded = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    body = {"inputs": [{"name": "expression", "shape": [1], "datatype": "BYTES", "data": [expression]},
                       {"name": "frames", "shape": [len(encoded)], "datatype": "BYTES", "data": encoded}]}
    req = urllib.request.Request(f"{url}/v2/models/{name}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        out = {o["name"]: o for o in json.loads(resp.read())["outputs"]}
    actor = [json.loads(r) for r in out["actor"]["data"]]
    return {"expression": expression, "text": out["text"]["data"][0],
            "actor_frames_with_mask": sum(r is not None for r in actor), "frames": len(actor),
            "has_target": bool(out["has_target"]["data"][0])}


def serve_and_query(model_dir: Path, split: Path, name: str, log: Path) -> dict:
    """Start ``reviosa serve`` on a free loopback port, wait for readiness, query one val expression, stop."""
    from reviosa.data.format import InterRVOSDataset
    from reviosa.services.process import free_ports, spawn, wait_http

    port = free_ports(1)[0]
    argv = [sys.executable, "-c", "from reviosa.cli import main; main()", "serve", "--model", str(model_dir),
            "--port", str(port), "--name", name]
    server = spawn("reviosa-serve", argv, log=log, url=f"http://127.0.0.1:{port}")
    try:
        wait_http(server, f"/v2/models/{name}/ready", timeout=300)
        ds = InterRVOSDataset.load(split)
        video, exp = next(iter(ds.iter_expressions()))
        answer = _query(server.url, name, ds.read_frames(video), exp.text)
        return {"url": server.url, **answer}
    finally:
        server.stop()


def score_baselines(split: Path, out: Path) -> dict[str, dict[str, float]]:
    """InterRVOS summary of every baseline predictor on ``split`` (the yardstick printed beside the model)."""
    from reviosa.baselines.predictors import PREDICTORS, run_baseline
    from reviosa.evaluate.config import EvalConfig
    from reviosa.evaluate.protocol import evaluate_split
    from reviosa.evaluate.report import write_outputs

    scores = {}
    for name in PREDICTORS:
        pred = out / "predictions" / name
        run_baseline(name, split, pred, workers=1)
        result = evaluate_split(split, pred, EvalConfig(workers=1, progress=False))
        write_outputs(result, out / "eval" / name)
        scores[name] = dict(result.summary)
    return scores


class _PipelineStages:
    """kfp.local task events as stage lines; a task that fails and starts again (a retry) stays one stage."""

    def __init__(self, stages: Stages, tasks):
        self.stages = stages
        self.labels = {t.name: f"pipeline: {t.label}" for t in tasks}
        self.failing: set[str] = set()

    def __call__(self, event: str, task: str, status: str) -> None:
        if event == "start":
            # Tasks run one after another here, so a failed task that is not started again has run out of retries.
            for other in self.failing - {task}:
                self.stages.finish(other, ok=False)
            self.failing.clear()
            self.stages.start(task, self.labels.get(task, f"pipeline: {task}"))
        elif status == "SUCCESS":
            self.stages.finish(task)
        elif task in self.stages.active:
            self.stages.active[task].log_end = self.stages.offset()
            self.failing.add(task)


def run_end_to_end(out: str | os.PathLike, cfg: DemoConfig | None = None, log=print,
                   stages: Stages | None = None) -> DemoResult:
    """Synthesize → annotate → snapshot → train → evaluate → register (kfp.local), then serve and query.

    ``stages`` hears each stage (services, data, every pipeline task, serving, baselines) start and end.
    """
    from mlflow import MlflowClient

    from reviosa.pipelines import steps
    from reviosa.pipelines.local import pipeline_tasks, run_local
    from reviosa.services import stack
    from reviosa.storage.config import local_config_path
    from reviosa.tracking.naming import TAG_DATA_VERSION, TAG_EVAL_RUN
    from reviosa.tracking.registry import download, logged_model_id

    cfg = cfg or DemoConfig()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages = stages or Stages()
    tasks = pipeline_tasks("end-to-end")
    stages.total = max(stages.total, 4 + sum(not t.conditional for t in tasks))
    t0 = time.perf_counter()
    seconds = {}
    saved_env = dict(os.environ)
    with stages.stage("start S3 + MLflow"):
        state = stack.up(out / "stack", s3_port=0, mlflow_port=0, with_mlflow=True)
        # Listed in the default state folder, so `reviosa services status|down` find it, even after a crash.
        stack.register_stack(state.root, f"reviosa demo in {out}")
    try:
        storage = state.storage
        seconds["services"] = time.perf_counter() - t0
        log(f"S3 {storage.endpoint} (bucket {storage.bucket}), MLflow {state.tracking_uri}")
        # kfp.local steps are subprocesses of this process: they find S3, its keys and MLflow through env.
        os.environ.update(storage.client_env())
        os.environ["REVIOSA_STORAGE_CONFIG"] = str(local_config_path(state.root))
        os.environ["MLFLOW_TRACKING_URI"] = state.tracking_uri
        t = time.perf_counter()
        raw = out / "raw"
        with stages.stage(f"synthesize videos ({cfg.train_videos} train, {cfg.val_videos} val)"):
            for split, n in (("train", cfg.train_videos), ("val", cfg.val_videos)):
                if not (raw / split / "meta_expressions.json").exists():
                    steps.synth_split(str(raw / split), n, cfg.seed, split,
                                      overrides=[f"frames={cfg.frames}", f"height={cfg.size}", f"width={cfg.size}"])
            repo = _data_repo(out / "data-repo", storage)
        seconds["synthesize"] = time.perf_counter() - t
        log(f"synthetic splits in {raw}; dataset versions in {repo}")
        t = time.perf_counter()
        root = out / "kfp"
        run_local("end-to-end", {"raw_train": str(raw / "train"), "raw_val": str(raw / "val"), "data_repo": str(repo),
                                 "model_size": "tiny", "epochs": 0.0,
                                 "train_overrides": [f"steps={cfg.steps}", f"seed={cfg.seed}"],
                                 "tracking_uri": state.tracking_uri,
                                 "model_name": cfg.model_name, "deploy_model": False}, root,
                  on_task=_PipelineStages(stages, tasks))
        seconds["pipeline"] = time.perf_counter() - t
        client = MlflowClient(tracking_uri=state.tracking_uri, registry_uri=state.tracking_uri)
        mv = client.get_model_version_by_alias(cfg.model_name, "candidate")
        scores = client.get_run(mv.tags[TAG_EVAL_RUN])
        result = DemoResult(out=str(out), tracking_uri=state.tracking_uri, pipeline_root=str(root),
                            data_repo=str(repo), model_version=str(mv.version), train_run_id=mv.run_id,
                            eval_run_id=scores.info.run_id, model_id=logged_model_id(mv),
                            data_version=mv.tags.get(TAG_DATA_VERSION, ""), stack=str(state.root),
                            metrics=dict(scores.data.metrics))
        t = time.perf_counter()
        with stages.stage("serve the model (KServe), query it"):
            model_dir = download(client, cfg.model_name, "candidate", out / "served-model")
            inner = next((p.parent for p in model_dir.rglob("config.yaml")), model_dir)
            result.served = serve_and_query(inner, raw / "val", cfg.model_name, out / "serve.log")
        seconds["serve"] = time.perf_counter() - t
        t = time.perf_counter()
        with stages.stage("score the baselines"):
            result.baselines = score_baselines(raw / "val", out / "baselines")
        seconds["baselines"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - t0
        result.seconds = {k: round(v, 1) for k, v in seconds.items()}
        (out / "demo_result.json").write_text(json.dumps(asdict(result), indent=1))
        return result
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        if not cfg.keep_services:
            stack.down(out / "stack")


# The trainer's console line every ``log_every`` steps, as the train task prints it (indented by kfp.local).
_TRAIN_STEP = re.compile(r"\s*step (\d+)/(\d+) loss ")


def _train_progress(stages: Stages):
    def on_line(line: str) -> None:
        if m := _TRAIN_STEP.match(line):
            stages.detail(f"step {m[1]}/{m[2]}")
    return on_line


def run_with_stages(out: str | os.PathLike, cfg: DemoConfig | None = None, verbose: bool = False) -> DemoResult:
    """:func:`run_end_to_end` as ``reviosa demo`` shows it: one line per stage, everything else in the log.

    Without ``verbose``, fds 1 and 2 (the kfp.local steps are children writing to them) go to ``<out>/demo.log``;
    a failure raises :class:`DemoFailed` once the console is back, with the end of the failed stage's output.
    With ``verbose`` nothing is captured: the stage lines come between the steps' own output.
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if verbose:
        stages = Stages(stream=sys.stdout, live=False)
        try:
            return run_end_to_end(out, cfg, stages=stages)
        finally:
            stages.close(ok=False)
    log = out / LOG_NAME
    log.write_text("")
    print(f"reviosa demo: one line per stage; everything else goes to {log}", flush=True)
    stages = None
    try:
        with output_to_log(log) as console:
            stages = Stages(stream=console, log_offset=lambda: os.path.getsize(log))
            with follow(log, _train_progress(stages)):
                try:
                    return run_end_to_end(out, cfg, stages=stages)
                except BaseException:
                    traceback.print_exc()  # into the log, where the report below reads it back
                    raise
                finally:
                    stages.close(ok=False)
    except Exception as err:
        failed = stages.failed[0] if stages is not None and stages.failed else None
        where = f" at {failed.label!r}" if failed else ""
        lines = tail(log, 30, failed.log_start, failed.log_end) if failed and failed.log_start is not None else []
        if not lines:
            lines = tail(log, 30)
        reason = strip_ansi(f"{type(err).__name__}: {err}")
        body = "\n".join(f"  | {line}" for line in lines)
        raise DemoFailed(f"reviosa demo failed{where}: {reason}\nlast {len(lines)} lines of its output:\n{body}\n"
                         f"full log: {log}") from err
    except KeyboardInterrupt:
        print(f"\ninterrupted; the log so far is in {log}", file=sys.stderr, flush=True)
        raise
