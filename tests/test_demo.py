"""The README's main command on a small split: synthetic world, baselines, InterRVOS evaluation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "reviosa"
    proc = subprocess.run([str(exe), "demo", "--out", str(tmp_path), "--videos", "6", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"^(\S+)\s+([\d.-]+)\s+([\d.-]+)\s+([\d.-]+)\s+(\d+)$",
                                                           proc.stdout, re.M)}
    assert set(rows) == {"oracle", "empty", "largest-moving"}, proc.stdout
    assert rows["oracle"][:3] == ("100.0", "100.0", "100.0")
    heuristic = float(rows["largest-moving"][2])
    assert float(rows["empty"][2]) < heuristic < 100.0
    for name in rows:
        report = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert report["missing"] == []
        assert (tmp_path / "eval" / name / "jf_hist.png").stat().st_size > 1000
