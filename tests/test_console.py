"""Stage lines and the log capture behind ``reviosa demo``'s console (fast: no services, no pipeline)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

from reviosa.pipelines.console import Stages, follow, output_to_log, stage_line, tail


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stage_lines_are_numbered_dotted_out_and_timed():
    assert stage_line(3, 17, "train", "  41.2 s", width=12) == "[ 3/17] train ....... " + "  41.2 s"
    out = io.StringIO()
    stages = Stages(total=3, stream=out)
    assert not stages.live  # not a terminal: one plain line per finished stage, nothing while it runs
    with stages.stage("start services"):
        assert out.getvalue() == ""
    stages.start("t1", "pipeline: train")
    stages.detail("step 4/10")
    stages.start("t1", "pipeline: train")  # started again (a retry): still one stage
    stages.finish("t1")
    with pytest.raises(ValueError), stages.stage("serve"):
        raise ValueError("no port")
    stages.start("late", "one more than expected")
    stages.close(ok=False)
    lines = out.getvalue().splitlines()
    assert [line.split(" .")[0] for line in lines] == [
        "[1/3] start services", "[2/3] pipeline: train", "[3/3] serve", "[4/4] one more than expected"]
    assert lines[0].endswith(" s") and "FAILED" not in lines[1]
    assert "FAILED after" in lines[2] and "FAILED after" in lines[3]
    assert [s.label for s in stages.failed] == ["serve", "one more than expected"]
    assert "step 4/10" not in out.getvalue() and "\r" not in out.getvalue()


def test_a_failed_stage_knows_its_part_of_the_log():
    size = [0]
    stages = Stages(log_offset=lambda: size[0])
    stages.start("task", "a pipeline task")
    size[0] = 120
    stages.finish("task", ok=False)
    with pytest.raises(KeyError), stages.stage("in this process"):
        size[0] = 300
        raise KeyError("x")
    task, local = stages.failed
    assert (task.log_start, task.log_end) == (0, 120)
    assert (local.log_start, local.log_end) == (120, None)  # to the end: the traceback is written after it


def test_live_line_spins_shows_progress_then_settles_on_one_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    term = _Terminal()
    stages = Stages(total=2, stream=term, interval=0.01)
    assert stages.live
    stages.start("train", "train ReVIOSa")
    stages.detail("step 40/300")
    time.sleep(0.1)
    stages.finish("train")
    stages.close()
    text = term.getvalue()
    assert "\r" in text and "step 40/300" in text and any(c in text for c in "|/-\\")
    redraws = [d.removesuffix("\x1b[K") for d in text.split("\r") if d.endswith("\x1b[K")]
    assert redraws and all(len(d) < 60 for d in redraws)  # a redraw that wrapped could not be overwritten
    final = text.rsplit("\r", 1)[1]
    assert final.startswith("[1/2] train ReVIOSa ...") and final.endswith(" s\x1b[K\n")
    monkeypatch.setenv("COLUMNS", "40")  # narrower than the label and its status: the label gives way
    stages = Stages(total=2, stream=_Terminal())
    stages.start("train", "pipeline: train ReVIOSa on everything")
    stages.detail("step 40/300")
    line = stages._fit(stages.active["train"], "|   12.3 s  step 40/300")
    assert line == "[1/2] pipe~ ... |   12.3 s  step 40/300" and len(line) == 39


def test_output_to_log_takes_children_and_python_output_and_gives_the_descriptors_back(tmp_path, monkeypatch):
    log = tmp_path / "run.log"
    # Python's own streams on fds 1 and 2 as in a real run (pytest swaps them), stdout block-buffered as when piped.
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=name == "stderr")
        monkeypatch.setattr(sys, name, stream)
    before = os.fstat(1).st_ino, os.fstat(2).st_ino
    lines = []
    with output_to_log(log) as console:
        with follow(log, lines.append, interval=0.01):
            print("python stdout")
            time.sleep(0.05)
            assert "python stdout" in lines  # line by line while captured, not when the buffer fills
            print("python stderr", file=sys.stderr)
            child = "import os; print('child stdout'); os.write(2, b'child fd2\\n')"
            subprocess.run([sys.executable, "-c", child], check=True)
            console.write("stage line\n")
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before
    text = log.read_text()
    for s in ("python stdout", "python stderr", "child stdout", "child fd2"):
        assert s in text and s in lines
    assert "stage line" not in text


def test_output_to_log_restores_descriptors_when_the_run_fails(tmp_path):
    before = os.fstat(1).st_ino
    with pytest.raises(RuntimeError), output_to_log(tmp_path / "run.log"):
        raise RuntimeError("boom")
    assert os.fstat(1).st_ino == before


def test_tail_reads_the_end_of_a_section_without_colour_codes(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "\x1b[91mFAILURE\x1b[0m\n\n")
    assert tail(log, 3) == ["line 98", "line 99", "FAILURE"]
    start = len("".join(f"line {i}\n" for i in range(10)))
    end = len("".join(f"line {i}\n" for i in range(20)))
    assert tail(log, 5, start, end) == [f"line {i}" for i in range(15, 20)]
    assert tail(log, 50, start, end) == [f"line {i}" for i in range(10, 20)]
    assert tail(tmp_path / "missing.log") == []
