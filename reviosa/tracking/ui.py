"""The MLflow web UI from a headless browser: compare-runs links, rendered DOM and screenshots (CI evidence)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# MLflow 3.17's UI opens every experiment in the GenAI view unless the link (or the sidebar switch, kept in the
# browser) says otherwise; the experiment's mlflow.experimentKind tag no longer decides it.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Link to a run's page in the model-training view."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """Link to an experiment's runs in the model-training view."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?{MODEL_TRAINING_VIEW}"


def model_version_url(tracking_uri: str, name: str, version: str) -> str:
    """Link to a registered model version's page."""
    return f"{tracking_uri.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def compare_runs_url(tracking_uri: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    """Link to MLflow's compare-runs page for ``run_ids``."""
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    exps = quote(json.dumps(experiment_ids, separators=(",", ":")))
    return f"{tracking_uri.rstrip('/')}/#/compare-runs?runs={runs}&experiments={exps}&{MODEL_TRAINING_VIEW}"


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def _chromium(url: str, extra: list[str], chromium: str | None, window: tuple[int, int], budget_ms: int,
              timeout: float) -> subprocess.CompletedProcess:
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found; install it (Debian: `apt-get install -y chromium`)")
    with tempfile.TemporaryDirectory(prefix="reviosa-chromium-") as profile:
        # A throwaway profile and no background traffic: the page under test is the only thing loaded.
        argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                f"--virtual-time-budget={budget_ms}", *extra, url]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def rendered_dom(url: str, *, chromium: str | None = None, window: tuple[int, int] = (1400, 1000),
                 budget_ms: int = 15000, timeout: float = 120) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    return _chromium(url, ["--dump-dom"], chromium, window, budget_ms, timeout).stdout


def screenshot(url: str, out: str | Path, *, chromium: str | None = None, window: tuple[int, int] = (1400, 1000),
               budget_ms: int = 15000, timeout: float = 120) -> Path:
    """Save a PNG of the rendered page to ``out``."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(url, [f"--screenshot={out}"], chromium, window, budget_ms, timeout)
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out
