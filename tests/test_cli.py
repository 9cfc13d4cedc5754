"""Every verb of the ``reviosa`` command answers ``--help``, and the data verbs work end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from _splits import make_split
from typer.testing import CliRunner

from reviosa.cli import app

runner = CliRunner()


def _command_paths(cmd, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        paths += _command_paths(sub, prefix + (name,))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))
assert len(ALL_COMMANDS) > 3, ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "reviosa")
def test_every_verb_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "reviosa"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "data" in out.stdout


def test_validate_reports_a_broken_split(tmp_path: Path) -> None:
    make_split(tmp_path / "split")
    ok = runner.invoke(app, ["data", "validate", str(tmp_path / "split")])
    assert ok.exit_code == 0 and "2 videos, 6 expressions" in ok.output
    (tmp_path / "split" / "JPEGImages" / "vid_b" / "00001.jpg").unlink()
    bad = runner.invoke(app, ["data", "validate", str(tmp_path / "split")])
    assert bad.exit_code == 1
    assert "vid_b" in bad.output and "00001" in bad.output


def test_baseline_command_writes_predictions(tmp_path: Path) -> None:
    make_split(tmp_path / "split")
    result = runner.invoke(app, ["baseline", "oracle", "--data", str(tmp_path / "split"), "--out",
                                 str(tmp_path / "pred"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / "vid_a" / "2" / "target" / "00003.png").exists()
