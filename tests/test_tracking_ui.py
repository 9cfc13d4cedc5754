"""Browser check: MLflow's compare-runs page, rendered by headless Chromium, shows both runs' metrics.

The screenshot is kept as a CI artifact under ``$REVIOSA_ARTIFACTS_DIR`` (default: the test's tmp folder).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pytest

from reviosa.tracking.evaluation import log_evaluation
from reviosa.tracking.ui import compare_runs_url, find_chromium, rendered_dom, screenshot


@pytest.mark.slow
def test_compare_runs_page_shows_metrics(mlflow_server, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("headless Chromium is required for the MLflow UI check: `apt-get install -y chromium`")
    uri = mlflow_server.tracking_uri
    runs = [log_evaluation({"actor_J&F": 0.4321, "target_J&F": 0.1234}, dataset="ui-check", run_name="ui-run-a",
                           tracking_uri=uri),
            log_evaluation({"actor_J&F": 0.8765, "target_J&F": 0.5678}, dataset="ui-check", run_name="ui-run-b",
                           tracking_uri=uri)]
    exp_id = mlflow_server.client().get_run(runs[0]).info.experiment_id
    url = compare_runs_url(uri, runs, [exp_id])

    # A tall window: the metrics table is a virtualised grid that renders only rows inside the viewport.
    window = (1400, 2000)
    dom = html.unescape(rendered_dom(url, chromium=chromium, window=window))
    assert "Comparing 2 Runs" in dom, dom[-3000:]
    # The table shows values rounded to 3 decimals; target_JF is not on the plot axis, so these come from it.
    for text in ("actor_JF", "target_JF", "ui-run-a", "ui-run-b", "0.123", "0.568"):
        assert text in dom, f"{text!r} not shown on {url}"

    out_dir = Path(os.environ.get("REVIOSA_ARTIFACTS_DIR") or tmp_path)
    png = screenshot(url, out_dir / "mlflow_compare_runs.png", chromium=chromium, window=window)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
