"""Serve a GGUF model with llama.cpp's OpenAI-compatible HTTP server (``xllamacpp``) on 127.0.0.1.

Run: ``python -m reviosa.annotate.llama_server --model model.gguf --port 8080``
"""

from __future__ import annotations

import argparse
import signal
import threading


def main(argv: list[str] | None = None) -> None:
    """Start the server and block until SIGTERM/SIGINT."""
    import xllamacpp

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--parallel", type=int, default=1)
    a = p.parse_args(argv)
    params = xllamacpp.CommonParams()
    params.model.path = a.model
    params.n_ctx = a.ctx
    params.n_parallel = a.parallel
    params.cpuparams.n_threads = a.threads
    params.cpuparams_batch.n_threads = a.threads
    params.hostnames = ["127.0.0.1"]
    params.port = a.port
    params.warmup = False
    server = xllamacpp.Server(params)  # serves HTTP from its own threads while this object lives
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening on {server.listening_address}", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
