"""Kill the annotation CLI mid-run (SIGKILL), rerun: identical output, and no finished request is sent again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.llm_stub import stub_server
from test_annotate import make_world

from reviosa.annotate.cache import AnswerCache
from reviosa.annotate.pipeline import RECORDS_DIR

CLI = [sys.executable, "-c", "from reviosa.cli import main; main()"]


def _annotate(src: Path, out: Path, url: str) -> list[str]:
    return [*CLI, "annotate", "run", str(src), "--out", str(out), "--backend", "openai", "--base-url", url,
            "--concurrency", "2", "--no-progress"]


def _outputs(out: Path) -> dict[str, bytes]:
    files = [out / "meta_expressions.json", out / "mask_dict.json", *sorted((out / RECORDS_DIR).glob("*.json"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.mark.slow
def test_killed_run_resumes_with_identical_output_and_no_repeated_calls(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_world(src, n_videos=6)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with stub_server(tmp_path / "stub.log", delay_s=0.08) as stub:
        subprocess.run(_annotate(src, tmp_path / "reference", stub.url), check=True, env=env, capture_output=True)
        reference = _outputs(tmp_path / "reference")

        out = tmp_path / "out"
        before = len(stub.stats()["keys"])
        proc = subprocess.Popen(_annotate(src, out, stub.url), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list((out / RECORDS_DIR).glob("*.json"))) < 2:  # kill once some videos are done, others not
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_videos = {p.stem for p in (out / RECORDS_DIR).glob("*.json")}
        assert 2 <= len(done_videos) < 6
        finished = AnswerCache(out / ".cache" / "answers").keys()  # requests whose answers were kept
        first_run = stub.stats()["keys"][before:]
        assert finished <= set(first_run)

        result = subprocess.run(_annotate(src, out, stub.url), env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        rerun = stub.stats()["keys"][before + len(first_run):]

    assert rerun, "the rerun had unfinished work to do"
    assert not finished & set(rerun), "finished requests were sent to the model again"
    assert _outputs(out) == reference
    report = json.loads((out / "annotate_report.json").read_text())
    assert report["videos_resumed"] == len(done_videos) and report["failures"] == 0
