"""A bounded, seeded fuzz of the predictor's HTTP side: mutated v1/v2 requests against a real ``reviosa serve``.

A few hundred requests built from valid ones (JSON and binary v2, v1; frames and allow-listed URIs) by structural
mutations (keys dropped, values of the wrong type, shapes, datatypes, outputs, parameters) and byte mutations
(truncation, flipped and inserted bytes, lone surrogates, lying length headers, odd content types and paths). No
answer may be a 5xx other than 503 (a client mistake is a 4xx), and the server must be live, ready and still
answering correctly afterwards. The counts are printed (``-s``) and carried in the assertion messages.
"""

from __future__ import annotations

import base64
import copy
import http.client
import http.server
import io
import json
import random
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from reviosa.data.video import write_video
from reviosa.model.config import ModelConfig
from reviosa.model.modeling import ReviosaModel
from reviosa.services.process import free_ports, spawn, wait_http

SEED = 20240611
REQUESTS = 300
EXPR = "the red circle chases the blue square"
REVIOSA = [sys.executable, "-c", "from reviosa.cli import main; main()"]


def _png(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """``reviosa serve`` with small limits, one allowed http prefix on a local file server."""
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "site" / "ok").mkdir(parents=True)
    write_video(tmp / "site" / "ok" / "clip.mp4", np.zeros((2, 16, 16, 3), np.uint8))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp / "site"), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{httpd.server_address[1]}"
    torch.manual_seed(0)
    ckpt = ReviosaModel.from_config(ModelConfig.from_yaml("tiny")).save_pretrained(tmp / "tiny")
    port = free_ports(1)[0]
    argv = [*REVIOSA, "serve", "--model", str(ckpt), "--port", str(port), "--allow-url", f"{site}/ok/",
            "--max-frames", "4", "--set", "max_height=64", "--set", "max_width=64", "--set", "max_body_bytes=262144",
            "--set", "fetch_timeout_s=5"]
    proc = spawn("reviosa-serve-fuzz", argv, log=tmp / "serve.log", url=f"http://127.0.0.1:{port}")
    try:
        wait_http(proc, "/v2/models/reviosa/ready", timeout=180)
        yield proc, site
    finally:
        proc.stop()
        httpd.shutdown()
        httpd.server_close()


def _seeds(site: str) -> list[tuple[str, dict, bytes | dict]]:
    """Valid requests: (path, headers, JSON document or raw body)."""
    frames = [base64.b64encode(_png(v)).decode() for v in (20, 200)]
    v2 = {"id": "fuzz", "inputs": [
        {"name": "expression", "shape": [1], "datatype": "BYTES", "data": [EXPR]},
        {"name": "frames", "shape": [2], "datatype": "BYTES", "data": frames}],
        "outputs": [{"name": "text"}, {"name": "actor", "parameters": {"binary_data": True}}]}
    v2_uri = {"inputs": [{"name": "expression", "shape": [1], "datatype": "BYTES", "data": [EXPR]},
                         {"name": "video_uri", "shape": [1], "datatype": "BYTES", "data": [f"{site}/ok/clip.mp4"]}],
              "parameters": {"binary_data_output": False}}
    v1 = {"instances": [{"expression": EXPR, "frames": frames},
                        {"expression": "the green star", "video_uri": f"{site}/ok/clip.mp4"}]}
    pngs = [_png(v) for v in (30, 90)]
    tensor = b"".join(len(p).to_bytes(4, "little") + p for p in pngs)
    expr = len(EXPR).to_bytes(4, "little") + EXPR.encode()
    head = json.dumps({"inputs": [
        {"name": "expression", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(expr)}},
        {"name": "frames", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(tensor)}}]}
    ).encode()
    binary_headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    return [("/v2/models/reviosa/infer", {}, v2), ("/v2/models/reviosa/infer", {}, v2_uri),
            ("/v1/models/reviosa:predict", {}, v1), ("/v2/models/reviosa/infer", binary_headers, head + expr + tensor)]


ODD_VALUES = [None, 0, -1, 2 ** 70, 1.5, True, "", "x" * 300, [], [[]], {}, {"a": {"b": [1]}}, [None], ["\u00e9"],
              "s3://nowhere/x.mp4", "file:///etc/passwd", "http://127.0.0.1:1/ok/x.mp4", [1, 2, 3], [-1], [2 ** 40],
              "BYTES", "FP16", "INT64", "<IMG_CONTEXT>", "%2e%2e/", [[[[[[[[[[1]]]]]]]]]]]


def _paths(doc, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _mutate_doc(rng: random.Random, doc) -> object:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        spots = [p for p, _ in _paths(doc) if p]
        if not spots:
            return rng.choice(ODD_VALUES)
        path = rng.choice(spots)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = rng.random()
        if action < 0.25:
            del parent[last]
        elif action < 0.7:
            parent[last] = rng.choice(ODD_VALUES)
        elif action < 0.8 and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif action < 0.9 and isinstance(parent, dict):
            parent[rng.choice(["extra", "outputs", "parameters", "binary_data", "name", "shape"])] = \
                rng.choice(ODD_VALUES)
        else:
            parent[last] = str(parent[last])
    return doc


def _mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    body = bytearray(body)
    action = rng.random()
    if action < 0.3 and body:
        return bytes(body[:rng.randrange(len(body))])
    if action < 0.6:
        for _ in range(rng.randint(1, 8)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        return bytes(body)
    if action < 0.8:
        at = rng.randrange(len(body) + 1)
        junk = rng.choice([b"\\ud800", b"\xff\xfe", b"\x00", b'"', b"}", b"[" * 2000, b"\\u0000", b"NaN", b"1e999"])
        return bytes(body[:at] + junk + body[at:])
    return bytes(body) * rng.randint(2, 3)


def _request(rng: random.Random, seeds) -> tuple[str, dict, bytes]:
    path, headers, doc = rng.choice(seeds)
    headers = dict(headers)
    body = doc if isinstance(doc, bytes) else json.dumps(_mutate_doc(rng, doc) if rng.random() < 0.75 else doc,
                                                         ensure_ascii=rng.random() < 0.5).encode()
    if isinstance(doc, bytes) or rng.random() < 0.35:
        body = _mutate_bytes(rng, body)
    roll = rng.random()
    if roll < 0.08:
        headers["Inference-Header-Content-Length"] = rng.choice(["-1", "abc", "0", str(len(body) + 5), "99999999",
                                                                 str(rng.randrange(len(body) + 1))])
    elif roll < 0.14:
        headers["Content-Type"] = rng.choice(["text/plain", "application/cloudevents+json", "", "multipart/x"])
    elif roll < 0.2:
        path = rng.choice(["/v2/models/other/infer", "/v2/models/reviosa/versions/7/infer", "/v1/models/reviosa",
                           "/v1/models/reviosa:explain", "/v2/models/reviosa%2Finfer", "/v2/models//infer",
                           "/v1/models/reviosa:predict?x=1", "/v2/models/reviosa/infer/"])
    headers.setdefault("Content-Type", "application/json")
    return path, headers, body


def _send(port: int, path: str, headers: dict, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_fuzzed_requests_get_no_5xx_and_leave_the_server_healthy(fuzz_server):
    server, site = fuzz_server
    port = int(server.url.rsplit(":", 1)[1])
    rng = random.Random(SEED)
    seeds = _seeds(site)
    counts, failures = Counter(), []
    t0 = time.monotonic()
    for i in range(REQUESTS):
        path, headers, body = _request(rng, seeds)
        status = _send(port, path, headers, body)
        counts[f"{status // 100}xx" if status != 503 else "503"] += 1
        if status >= 500 and status != 503:
            failures.append((i, status, path, headers, body[:300]))
    took = time.monotonic() - t0
    summary = (f"fuzz: {REQUESTS} requests in {took:.0f} s: {counts['2xx']} 2xx, {counts['3xx']} 3xx (trailing "
               f"slash), {counts['4xx']} 4xx, {counts['503']} 503, {counts['5xx']} other 5xx")
    print("\n" + summary)
    assert not failures, f"{summary}; first: {failures[:3]}"
    assert counts["2xx"] and counts["4xx"], summary
    assert server.alive(), summary
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/reviosa/ready"):
        with_status = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with_status.request("GET", path)
        assert with_status.getresponse().status == 200, (path, summary)
        with_status.close()
    # and it still answers a valid request correctly
    path, headers, doc = seeds[0]
    assert _send(port, path, {"Content-Type": "application/json"}, json.dumps(doc).encode()) == 200
