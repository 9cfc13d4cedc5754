"""Expressions per second of ``reviosa annotate run`` against a local OpenAI-compatible server with a fixed delay.

A stub server on 127.0.0.1 answers every request after ``--delay`` seconds (a stand-in for model latency);
the pipeline annotates a synthetic split with all four stages over HTTP (images included) at concurrency
1, 8 and 32, each run with a fresh answer cache. Printed per concurrency: requests, expressions, wall time,
expressions/s, speed-up over concurrency 1 measured in the same run, and the latency-bound ideal
(requests x delay / concurrency) as the reference a perfect client would reach.

    python benchmarks/annotate_throughput.py [--videos 8] [--delay 0.2] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from reviosa.annotate.config import AnnotateConfig
from reviosa.annotate.pipeline import run_annotation
from reviosa.data.synthetic import SyntheticConfig, generate_split

# The stub server is test code (tests/fixtures/llm_stub.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.llm_stub import stub_server  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--delay", type=float, default=0.2, help="server seconds per request")
    p.add_argument("--concurrency", default="1,8,32")
    a = p.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_split(tmp / "split", SyntheticConfig(frames=12, height=96, width=96), a.videos, seed=0, progress=False)
        with stub_server(tmp / "stub.log", delay_s=a.delay) as stub:
            print(f"{a.videos} videos, server delay {a.delay * 1000:.0f} ms per request")
            print(f"{'concurrency':>11} {'requests':>8} {'expressions':>11} {'wall s':>8} {'expr/s':>8} "
                  f"{'vs c=1':>7} {'ideal s':>8} {'peak in flight':>14}")
            base = None
            for c in levels:
                cfg = AnnotateConfig(backend="openai", base_url=stub.url, concurrency=c)
                seen = stub.stats()["answered"]
                t0 = time.perf_counter()
                report = run_annotation(tmp / "split", tmp / f"out{c}", cfg, progress=False)
                wall = time.perf_counter() - t0
                stats = stub.stats()
                requests = stats["answered"] - seen
                rate = report["expressions"] / wall
                base = base or rate
                print(f"{c:>11} {requests:>8} {report['expressions']:>11} {wall:>8.2f} {rate:>8.1f} "
                      f"{rate / base:>6.1f}x {requests * a.delay / c:>8.2f} {stats['max_in_flight']:>14}")


if __name__ == "__main__":
    main()
