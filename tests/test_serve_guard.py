"""The predictor's guards against a real ``reviosa serve`` on 127.0.0.1 and real local HTTP servers, no mocks.

URL allow-list bypasses (a "secret" outside the allowed prefix must never be requested), bounded memory per
request (body size, decoded pixels, a bounded queue answering 503 + Retry-After; the server's peak RSS is
measured), slow video sources (a total deadline per fetch, outside the model's turn), the Host allow-list, and
clean 4xx/5xx answers for an unreachable object store.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import io
import json
import posixpath
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from kserve.errors import InvalidInput
from PIL import Image

from reviosa.config import ConfigError
from reviosa.data.video import write_video
from reviosa.model.config import ModelConfig
from reviosa.model.modeling import ReviosaModel
from reviosa.serve.config import ServeConfig
from reviosa.serve.guard import host_allowed
from reviosa.serve.urls import check_uri
from reviosa.services.process import free_ports, spawn, wait_http

EXPR = "the red circle chases the blue square"
REVIOSA = [sys.executable, "-c", "from reviosa.cli import main; main()"]
MiB = 1024 * 1024
# The server's limits: a worst-case request is 8 frames of 1920x1080 (max_pixels) in a body of almost 2 MiB.
LIMITS = {"max_waiting": 9, "max_pixels": 8 * 1920 * 1080, "max_body_bytes": 2 * MiB, "max_bytes": 3 * MiB // 2,
          "fetch_timeout_s": 3.0, "body_timeout_s": 10.0}
INFER = "/v2/models/reviosa/infer"


def _png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _v2(frames=None, uri=None, expression=EXPR) -> dict:
    inputs = [{"name": "expression", "shape": [1], "datatype": "BYTES", "data": [expression]}]
    if frames is not None:
        inputs.append({"name": "frames", "shape": [len(frames)], "datatype": "BYTES", "data": frames})
    if uri is not None:
        inputs.append({"name": "video_uri", "shape": [1], "datatype": "BYTES", "data": [uri]})
    return {"inputs": inputs}


class Site:
    """A naive file server on loopback, as the bypasses relied on: it percent-decodes a path (twice) and
    normalises it before looking it up, so ``/ok/%2e%2e/secret.mp4`` reaches ``/secret.mp4``. Every request is
    counted by its normalised path; ``/ok/trickle.mp4`` sends one byte every 0.2 s and never ends."""

    def __init__(self, files: dict[str, bytes], other: str = ""):
        self.files, self.hits, self.other = files, Counter(), other
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.unquote(self.path.split("?")[0])).replace("\\", "/")
                path = posixpath.normpath(path.split(";")[0])
                site.hits[path] += 1
                redirects = {"/ok/redirect-in": "/ok/clip.mp4", "/ok/redirect-out": "/secret.mp4",
                             "/ok/redirect-other": f"{site.other}/ok/clip.mp4"}
                if path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/ok/trickle.mp4":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 ** 6))
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        return
                elif path in site.files:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(site.files[path])))
                    self.end_headers()
                    self.wfile.write(site.files[path])
                else:
                    self.send_error(404)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The allowed site (``/ok/`` allowed, ``/secret.mp4`` not) and another site on another port."""
    root = tmp_path_factory.mktemp("sites")
    write_video(root / "clip.mp4", np.random.default_rng(0).integers(0, 255, (3, 32, 48, 3), dtype=np.uint8))
    clip = (root / "clip.mp4").read_bytes()
    other = Site({"/ok/clip.mp4": clip, "/secret.mp4": clip})
    site = Site({"/ok/clip.mp4": clip, "/secret.mp4": clip}, other=other.url)
    try:
        yield site, other
    finally:
        site.close()
        other.close()


@pytest.fixture(scope="module")
def guarded(sites, tmp_path_factory):
    """``reviosa serve`` with small limits (``LIMITS``), one allowed http prefix and an S3 store that is down."""
    site, _ = sites
    tmp = tmp_path_factory.mktemp("guarded")
    torch.manual_seed(0)
    ckpt = ReviosaModel.from_config(ModelConfig.from_yaml("tiny")).save_pretrained(tmp / "tiny")
    dead = free_ports(1)[0]
    (tmp / "creds.json").write_text(json.dumps({"access_key": "test-key", "secret_key": "test-secret-key"}))
    (tmp / "storage.yaml").write_text(f"endpoint: http://127.0.0.1:{dead}\nbucket: deadbucket\n"
                                      f"credentials_file: {tmp / 'creds.json'}\n")
    port = free_ports(1)[0]
    argv = [*REVIOSA, "serve", "--model", str(ckpt), "--port", str(port), "--allow-url", f"{site.url}/ok/",
            "--allow-url", "s3://deadbucket/videos/", "--allow-host", "reviosa-predictor.test.svc",
            *[a for k, v in LIMITS.items() for a in ("--set", f"{k}={v}")]]
    proc = spawn("reviosa-serve-guarded", argv, log=tmp / "serve.log", url=f"http://127.0.0.1:{port}",
                 env={"REVIOSA_STORAGE_CONFIG": str(tmp / "storage.yaml"), "REVIOSA_CACHE": str(tmp / "cache")})
    try:
        wait_http(proc, "/v2/models/reviosa/ready", timeout=180)
        yield proc
    finally:
        proc.stop()


def _post(server, path: str, body: dict | bytes, headers: dict | None = None, timeout: float = 120):
    """(status, headers, parsed JSON) of one POST over a fresh connection."""
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw or b"{}")
    finally:
        conn.close()


def _get(server, path: str, host: str | None = None):
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host} if host is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _inside(server) -> float:
    text = _get(server, "/metrics")[1].decode()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("reviosa_serve_requests_inside ")))


# -- 1. URL allow-list --------------------------------------------------------------------------------------------

BYPASSES = ["/ok/%2e%2e/secret.mp4", "/ok/.%2e/secret.mp4", "/ok/%2e./secret.mp4", "/ok/..%2fsecret.mp4",
            "/ok/%2E%2E/secret.mp4", "/ok/%2e%2e%2fsecret.mp4", "/ok/%252e%252e/secret.mp4", "/ok/%252e%252e%252f"
            "secret.mp4", "/ok/..%5csecret.mp4", "/ok/..%5Csecret.mp4", "/ok/..\\secret.mp4", "/ok/../secret.mp4",
            "/ok/./../secret.mp4", "/ok/..;/secret.mp4", "/ok%2f..%2fsecret.mp4", "/ok/clip.mp4#/../../secret.mp4",
            "/ok/%00/../secret.mp4"]


def _bypass_uris(site: str, other: str) -> list[str]:
    port, other_port = site.rsplit(":", 1)[1], other.rsplit(":", 1)[1]
    return [site + p for p in BYPASSES] + [
        f"http://127.0.0.1:{port}@127.0.0.1:{other_port}/ok/clip.mp4",   # userinfo: the host is the other one
        f"http://user@127.0.0.1:{port}/ok/clip.mp4",
        f"http://127.0.0.1%3a{other_port}/ok/clip.mp4",
        f"{other}/ok/clip.mp4",                                            # another port
        f"https://127.0.0.1:{port}/ok/clip.mp4",                           # another scheme
        f"http://localhost:{port}/ok/clip.mp4",                            # another host name
        f"{site}/okay/clip.mp4", f"{site}/ok", f"{site}/secret.mp4",
    ]


def test_allow_list_refuses_every_bypass_before_any_request(sites):
    site, other = sites
    cfg = ServeConfig(allowed_url_prefixes=[f"{site.url}/ok/"])
    for uri in _bypass_uris(site.url, other.url):
        with pytest.raises(InvalidInput):
            check_uri(uri, cfg)
    for uri in (f"{site.url}/ok/clip.mp4", f"{site.url.upper()}/ok/clip.mp4", f"{site.url}/ok/a%20b.mp4",
                f"{site.url}/ok/clip.mp4?X-Amz-Credential=a%2Fb"):
        assert check_uri(uri, cfg) == uri


def test_served_allow_list_never_fetches_the_secret(guarded, sites):
    site, other = sites
    before, before_other = sum(site.hits.values()), sum(other.hits.values())
    for uri in _bypass_uris(site.url, other.url):
        status, _, out = _post(guarded, INFER, _v2(uri=uri))
        assert status == 400, (uri, out)
    # Refused before any request was made: neither server saw one, the secret least of all.
    assert sum(site.hits.values()) == before and sum(other.hits.values()) == before_other
    for path, fragment in (("/ok/redirect-out", "redirects to"), ("/ok/redirect-other", "redirects to")):
        status, _, out = _post(guarded, INFER, _v2(uri=site.url + path))
        assert status == 400 and fragment in out["error"], out
    assert site.hits["/secret.mp4"] == 0 and sum(other.hits.values()) == before_other
    # Allowed: the plain URL, a redirect that stays inside the prefix, and an upper-case scheme and host.
    for uri in (f"{site.url}/ok/clip.mp4", f"{site.url}/ok/redirect-in", f"HTTP://{site.url[7:]}/ok/clip.mp4"):
        status, _, out = _post(guarded, INFER, _v2(uri=uri))
        assert status == 200, (uri, out)
    assert site.hits["/secret.mp4"] == 0


# -- 2. memory per request ----------------------------------------------------------------------------------------

def _worst_case_body() -> bytes:
    """8 frames of 1920x1080 (the pixel limit) in a body just under max_body_bytes (one frame half noise)."""
    plain = _b64(_png_bytes(np.full((1080, 1920, 3), 90, np.uint8)))
    noisy = np.full((1080, 1920, 3), 90, np.uint8)
    noisy[:, :390] = np.random.default_rng(0).integers(0, 255, (1080, 390, 3), dtype=np.uint8)
    frames = [_b64(_png_bytes(noisy))] + [plain] * 7
    body = json.dumps(_v2(frames=frames)).encode()
    assert 0.8 * LIMITS["max_body_bytes"] < len(body) <= LIMITS["max_body_bytes"], len(body)
    return body


def test_body_over_the_limit_is_refused_from_content_length_without_reading_it(guarded):
    port = int(guarded.url.rsplit(":", 1)[1])
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {200 * MiB}\r\n\r\n".encode())
        answer = b""
        while b"}" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    # Answered at once, from the header alone: not one byte of the 200 MB was sent.
    assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer, answer
    assert time.monotonic() - t0 < 5


def test_streamed_body_over_the_limit_is_stopped_at_the_limit(guarded):
    port = int(guarded.url.rsplit(":", 1)[1])
    rss0 = _status_kb(guarded.pid, "VmRSS")
    sent, chunk = 0, b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        sock.settimeout(0.05)
        answer = b""
        try:
            while sent < 50 * MiB and not answer:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        answer = answer or sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The server stopped reading near the limit, and did not keep what it read.
    assert sent < LIMITS["max_body_bytes"] + 16 * MiB
    assert _status_kb(guarded.pid, "VmRSS") - rss0 < 64 * 1024


def test_a_body_that_never_completes_is_408_and_frees_its_place(guarded):
    port = int(guarded.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", INFER)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b'{"inputs": [')
    t0 = time.monotonic()
    resp = conn.getresponse()
    took = time.monotonic() - t0
    assert resp.status == 408 and b"did not arrive within" in resp.read(), resp.status
    conn.close()
    assert LIMITS["body_timeout_s"] - 1 < took < LIMITS["body_timeout_s"] + 5, took
    assert _inside(guarded) == 0


def test_pixels_over_the_limit_are_refused_before_decoding(guarded):
    # The request: 64 plain 1920x1080 PNGs (about 0.5 MB) that decode to 400 MB.
    plain = _b64(_png_bytes(np.zeros((1080, 1920, 3), np.uint8)))
    rss0 = _status_kb(guarded.pid, "VmRSS")
    status, _, out = _post(guarded, INFER, _v2(frames=[plain] * 64))
    assert status == 400 and f"the limit is {LIMITS['max_pixels']}" in out["error"], out
    assert _status_kb(guarded.pid, "VmRSS") - rss0 < 64 * 1024


def test_ten_parallel_worst_case_requests_stay_under_the_memory_bound_and_the_rest_get_503(guarded):
    body = _worst_case_body()
    status, _, out = _post(guarded, INFER, body)         # warm-up: lazy allocations of a first run
    assert status == 200, out
    port = int(guarded.url.rsplit(":", 1)[1])
    idle_kb = _status_kb(guarded.pid, "VmRSS")
    Path(f"/proc/{guarded.pid}/clear_refs").write_text("5")   # restart the peak (VmHWM) from now
    capacity = LIMITS["max_waiting"] + 1
    # Ten clients send all but the last byte: all ten are admitted and wait with their bodies in flight.
    conns = []
    for _ in range(capacity):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.putrequest("POST", INFER)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:-1])
        conns.append(conn)
    deadline = time.monotonic() + 30
    while _inside(guarded) < capacity:
        assert time.monotonic() < deadline, "the ten requests were not admitted"
        time.sleep(0.05)
    # The 11th..14th: 503 with Retry-After, at once.
    for _ in range(4):
        t0 = time.monotonic()
        status, headers, out = _post(guarded, INFER, body)
        assert status == 503 and int(headers["retry-after"]) >= 1, (status, headers, out)
        assert "max_waiting" in out["error"] and time.monotonic() - t0 < 10
    # Now all ten bodies complete at once: they are parsed, wait, and are decoded one at a time.
    for conn in conns:
        conn.send(body[-1:])

    def answer(conn):
        resp = conn.getresponse()
        return resp.status, resp.read()

    with ThreadPoolExecutor(capacity) as pool:
        answers = list(pool.map(answer, conns))
    for conn in conns:
        conn.close()
    assert [s for s, _ in answers] == [200] * capacity, [a[1][:200] for a in answers if a[0] != 200]
    peak_kb = _status_kb(guarded.pid, "VmHWM")
    # The bound from the config (see default.yaml): every admitted request may hold its body, the parsed body and
    # its fetched bytes; one at a time holds its decoded frames and masks (6 bytes a pixel) and the model's
    # float copy of one frame (16 bytes a pixel of the largest frame).
    bound = (capacity * (2 * LIMITS["max_body_bytes"] + LIMITS["max_bytes"]) + 6 * LIMITS["max_pixels"]
             + 16 * 1920 * 1080)
    print(f"\nmemory: idle {idle_kb / 1024:.0f} MiB, peak {peak_kb / 1024:.0f} MiB, "
          f"peak - idle {(peak_kb - idle_kb) / 1024:.0f} MiB, bound {bound / MiB:.0f} MiB")
    assert (peak_kb - idle_kb) * 1024 <= bound
    assert _inside(guarded) == 0


# -- 3. slow video sources ----------------------------------------------------------------------------------------

def test_slow_sources_hit_a_total_deadline_and_never_hold_other_requests(guarded, sites):
    site, _ = sites
    frames = [_b64(_png_bytes(np.full((32, 48, 3), v, np.uint8))) for v in (10, 200)]
    timeout = LIMITS["fetch_timeout_s"]

    def slow():
        t0 = time.monotonic()
        status, _, out = _post(guarded, INFER, _v2(uri=f"{site.url}/ok/trickle.mp4"))
        return status, out, time.monotonic() - t0

    with ThreadPoolExecutor(6) as pool:
        slow_calls = [pool.submit(slow) for _ in range(6)]
        time.sleep(0.5)
        t0 = time.monotonic()
        status, _, out = _post(guarded, INFER, _v2(frames=frames))
        quick = time.monotonic() - t0
        results = [f.result() for f in slow_calls]
    assert status == 200, out
    # The 2-frame request did not wait for the six fetches (each bytes-trickling well past the deadline).
    assert quick < timeout, quick
    for status, out, took in results:
        assert status == 504 and f"within {timeout:g} s" in out["error"], out
        assert timeout - 0.5 <= took < timeout + 3, took


# -- 4. clean answers for upstream failures -------------------------------------------------------------------

def test_unreachable_object_store_is_502_without_its_address(guarded):
    status, _, out = _post(guarded, INFER, _v2(uri="s3://deadbucket/videos/clip.mp4"))
    assert status in (502, 504), out
    assert "127.0.0.1" not in out["error"] and "deadbucket/videos/clip.mp4" in out["error"]
    status, _, out = _post(guarded, INFER, _v2(uri="s3://deadbucket/videos/"))
    assert status == 400 and "not an object" in out["error"], out


# -- 6. Host header -------------------------------------------------------------------------------------------------

def test_host_header_allow_list(guarded):
    port = int(guarded.url.rsplit(":", 1)[1])
    frames = [_b64(_png_bytes(np.full((16, 16, 3), 7, np.uint8)))]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "reviosa-predictor.test.svc",
                 f"reviosa-predictor.test.svc:{port}"):
        assert _post(guarded, INFER, _v2(frames=frames), {"Host": host})[0] == 200, host
        assert _get(guarded, "/v2/models/reviosa", host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "localhost", "127.0.0.1.nip.io",
                 f"reviosa-predictor.test.svc.evil.example:{port}", "", "a b"):
        status, _, out = _post(guarded, INFER, _v2(frames=frames), {"Host": host})
        assert status == 400 and "is not served here" in out["error"], (host, out)
        assert _get(guarded, "/v2/models/reviosa", host)[0] == 400, host
    # Probes come from the kubelet with the pod IP as Host; they stay open and reveal nothing else.
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/reviosa/ready", "/v1/models/reviosa",
                 "/metrics"):
        assert _get(guarded, path, "10.1.2.3:8080")[0] == 200, path


def test_host_matching_rules():
    allowed = ServeConfig(allowed_hosts=["svc.local", "*.example.org", "api:9000"], http_port=8080).host_allow_list()
    for ok in ("svc.local", "SVC.local:1234", "a.example.org", "b.a.example.org:443", "api:9000", "127.0.0.1:8080",
               "localhost:8080", "[::1]:8080"):
        assert host_allowed(ok, allowed), ok
    for bad in (None, "", "example.org", "xexample.org", "api", "api:9001", "127.0.0.1", "127.0.0.1:8081",
                "localhost:80", "svc.local.evil", "svc.local:x", "[::1]"):
        assert not host_allowed(bad, allowed), bad
    assert host_allowed("anything:1", ["*"])
    for bad in ("a b", "x/y", "*x", "h:0", "a:b:c", "u@h"):
        with pytest.raises(ConfigError, match="allowed_hosts"):
            ServeConfig.from_dict({"allowed_hosts": [bad]})
