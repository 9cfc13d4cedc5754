"""Bounded load on ``reviosa serve`` (a real KServe ModelServer on 127.0.0.1): p50/p99 latency and throughput.

Ours: v2 ``/infer`` requests with base64 PNG frames over HTTP, ``--concurrency`` clients, ``--requests`` in all.
Reference (same run): the same model called in-process (``predict_video`` in a worker thread, as the server
calls it; no HTTP, no decoding), which is the floor the server's overhead is measured against. Tiny random
checkpoint unless ``--model`` is given.

    python benchmarks/serve_load.py
    python benchmarks/serve_load.py --requests 200 --concurrency 8 --frames 8 --size 240x320
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _body(frames: np.ndarray, expression: str) -> bytes:
    from PIL import Image

    encoded = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    return json.dumps({"inputs": [
        {"name": "expression", "shape": [1], "datatype": "BYTES", "data": [expression]},
        {"name": "frames", "shape": [len(encoded)], "datatype": "BYTES", "data": encoded}]}).encode()


def _post(url: str, body: bytes) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    return time.perf_counter() - t0


def main() -> None:
    """Start the server, warm up, run the bounded load and the in-process reference, print both."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint folder or s3:// URI (default: a tiny random one)")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", default="64x96", help="HxW of the frames")
    args = ap.parse_args()
    h, w = (int(x) for x in args.size.split("x"))

    import torch

    from reviosa.model.config import ModelConfig
    from reviosa.model.inference import predict_video
    from reviosa.model.modeling import ReviosaModel
    from reviosa.services.process import free_ports, spawn, wait_http

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    if args.model:
        model_uri = args.model
        net = ReviosaModel.from_pretrained(model_uri)
    else:
        torch.manual_seed(0)
        net = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
        model_uri = str(net.save_pretrained(tmp / "tiny"))
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, h, w, 3), dtype=np.uint8)
    expression = "the red circle chases the blue square"

    port = free_ports(1)[0]
    argv = [sys.executable, "-c", "from reviosa.cli import main; main()", "serve", "--model", model_uri,
            "--port", str(port), "--max-frames", str(max(args.frames, 64)),
            # Every client may wait its turn: the load measures latency, not the 503s of a full queue.
            "--set", f"max_waiting={args.concurrency}",
            "--set", f"max_pixels={max(args.frames * h * w, 32 * 1920 * 1080)}"]
    server = spawn("reviosa-serve", argv, log=tmp / "serve.log", url=f"http://127.0.0.1:{port}")
    try:
        t0 = time.perf_counter()
        wait_http(server, "/v2/models/reviosa/ready", timeout=300)
        ready_s = time.perf_counter() - t0
        url = server.url + "/v2/models/reviosa/infer"
        body = _body(frames, expression)
        for _ in range(3):
            _post(url, body)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            lat = list(pool.map(lambda _: _post(url, body), range(args.requests)))
        wall = time.perf_counter() - t0
    finally:
        server.stop()

    def reference() -> list[float]:
        out = []
        for i in range(max(10, args.requests // 4) + 3):
            t0 = time.perf_counter()
            predict_video(net, frames, expression)
            if i >= 3:
                out.append(time.perf_counter() - t0)
        return out

    # The server runs inference in a worker thread (asyncio.to_thread); the reference does the same, because
    # torch's intra-op thread pool behaves differently on the main thread of a busy machine.
    with ThreadPoolExecutor(1) as pool:
        ref = pool.submit(reference).result()

    print(f"# serve load: {args.requests} requests, concurrency {args.concurrency}, {args.frames} frames {h}x{w}, "
          f"body {len(body) / 1024:.0f} KiB, torch threads {torch.get_num_threads()}; server ready in {ready_s:.1f} s")
    print(f"{'':28s} {'p50 ms':>9s} {'p99 ms':>9s} {'req/s':>8s}")
    print(f"{'ours: HTTP v2 /infer':28s} {1e3 * _pct(lat, 50):9.1f} {1e3 * _pct(lat, 99):9.1f} "
          f"{args.requests / wall:8.2f}")
    print(f"{'reference: in-process call':28s} {1e3 * _pct(ref, 50):9.1f} {1e3 * _pct(ref, 99):9.1f} "
          f"{1 / statistics.mean(ref):8.2f}")


if __name__ == "__main__":
    main()
