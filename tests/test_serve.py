"""KServe predictor: a real ``ModelServer`` (``reviosa serve``) on 127.0.0.1 with a tiny random checkpoint.

Queried over HTTP with v1 and v2 requests: base64 frames, allow-listed http:// and s3:// videos, and bad
requests (too many frames, too many bytes, too large, malformed base64, disallowed URL, wrong shapes).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from kserve.errors import InvalidInput
from PIL import Image

from reviosa.config import ConfigError
from reviosa.data.rle import decode_rle
from reviosa.data.video import write_video
from reviosa.model.config import ModelConfig
from reviosa.model.errors import CheckpointError
from reviosa.model.inference import Prediction
from reviosa.model.modeling import ReviosaModel
from reviosa.serve.config import ServeConfig
from reviosa.serve.inputs import VideoRequest, decode_base64_frames
from reviosa.serve.model import ReviosaPredictor, result_dict
from reviosa.serve.urls import check_uri
from reviosa.services.process import free_ports, spawn, wait_http

EXPR = "the red circle chases the blue square"
MAX_FRAMES = 6
REVIOSA = [sys.executable, "-c", "from reviosa.cli import main; main()"]


def _png(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _frames(n=4, h=32, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
    return model.save_pretrained(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def video_site(tmp_path_factory):
    """A plain HTTP file server on loopback holding a small video (and one above the frame limit)."""
    root = tmp_path_factory.mktemp("site")
    (root / "ok").mkdir()
    write_video(root / "ok" / "clip.mp4", _frames(4, 32, 48))
    write_video(root / "ok" / "long.mp4", _frames(MAX_FRAMES + 3, 32, 48))
    (root / "ok" / "junk.mp4").write_bytes(b"not a video at all")
    write_video(root / "secret.mp4", _frames(2, 32, 48))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(checkpoint, video_site, s3_server, tmp_path_factory):
    """``reviosa serve`` in a subprocess, model read from S3, http + one S3 bucket allow-listed."""
    from reviosa.storage.config import StorageConfig

    site, _ = video_site
    storage = StorageConfig(endpoint=s3_server.url, bucket="serve-test",
                            credentials_file=s3_server.storage.credentials_file)
    client = storage.minio()
    if not client.bucket_exists("serve-test"):
        client.make_bucket("serve-test")
    fs = storage.s3fs()
    fs.put(str(checkpoint), "serve-test/models/tiny", recursive=True)
    buf = tmp_path_factory.mktemp("s3vid") / "clip.mp4"
    write_video(buf, _frames(3, 32, 48, seed=1))
    fs.put(str(buf), "serve-test/videos/clip.mp4")
    fs.put(str(buf), "serve-test/private/clip.mp4")

    port = free_ports(1)[0]
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    argv = [*REVIOSA, "serve", "--model", "s3://serve-test/models/tiny",
            "--port", str(port), "--max-frames", str(MAX_FRAMES),
            "--allow-url", f"{site}/ok/", "--allow-url", "s3://serve-test/videos/"]
    # The server reaches S3 only through its storage config (endpoint, and keys from the credentials file):
    # no AWS_* variable is in its environment, so the s3:// model and videos prove that path.
    (log.parent / "storage.yaml").write_text(storage.to_yaml())
    env = {"REVIOSA_STORAGE_CONFIG": str(log.parent / "storage.yaml"), "REVIOSA_CACHE": str(log.parent / "cache")}
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            mp.delenv(key)
        proc = spawn("reviosa-serve", argv, log=log, url=f"http://127.0.0.1:{port}", env=env)
    try:
        wait_http(proc, "/v2/models/reviosa/ready", timeout=120)
        yield proc
    finally:
        proc.stop()


def _call(url: str, body=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _v2(expression=EXPR, frames=None, uri=None, **override):
    inputs = [{"name": "expression", "shape": [1], "datatype": "BYTES", "data": [expression]}]
    if frames is not None:
        inputs.append({"name": "frames", "shape": [len(frames)], "datatype": "BYTES", "data": frames})
    if uri is not None:
        inputs.append({"name": "video_uri", "shape": [1], "datatype": "BYTES", "data": [uri]})
    body = {"id": "req-1", "inputs": inputs}
    body.update(override)
    return body


def _check_track(track, n, h, w):
    assert len(track) == n
    for rle in track:
        assert rle is None or decode_rle(rle).shape == (h, w)


def test_server_binds_loopback_only_and_is_ready(server):
    port = int(server.url.rsplit(":", 1)[1])
    assert _call(server.url + "/v2/health/ready")[1]["ready"] is True
    assert _call(server.url + "/v2/models/reviosa/ready") == (200, {"name": "reviosa", "ready": True})
    assert _call(server.url + "/v1/models/reviosa")[1]["ready"] is True
    # The listening socket's local address is 127.0.0.1 (KServe alone would bind 0.0.0.0).
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
    assert listening == ["0100007F:%04X" % port]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(("192.0.2.250", 9))  # no packet is sent; this only picks the outward interface address
    outward = probe.getsockname()[0]
    probe.close()
    if not outward.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=2).close()


def test_v2_base64_frames(server):
    frames = _frames(4, 32, 48)
    status, out = _call(server.url + "/v2/models/reviosa/infer", _v2(frames=[_png(f) for f in frames]))
    assert status == 200, out
    assert out["id"] == "req-1" and out["model_name"] == "reviosa"
    by = {o["name"]: o for o in out["outputs"]}
    assert set(by) == {"text", "actor", "target", "has_target", "frame_size"}
    assert by["frame_size"]["data"] == [32, 48]
    assert by["actor"]["shape"] == [4] and by["target"]["shape"] == [4]
    _check_track([json.loads(s) for s in by["actor"]["data"]], 4, 32, 48)
    assert isinstance(by["text"]["data"][0], str)


def test_v1_http_and_s3_uris(server, video_site):
    site, _ = video_site
    body = {"instances": [{"expression": EXPR, "video_uri": f"{site}/ok/clip.mp4"},
                          {"expression": "the green star", "video_uri": "s3://serve-test/videos/clip.mp4"}]}
    status, out = _call(server.url + "/v1/models/reviosa:predict", body)
    assert status == 200, out
    first, second = out["predictions"]
    assert (first["num_frames"], first["height"], first["width"]) == (4, 32, 48)
    assert second["num_frames"] == 3
    _check_track(first["actor"], 4, 32, 48)
    assert first["target"] is None or len(first["target"]) == 4


def test_v2_request_without_id_gets_one(server):
    body = _v2(frames=[_png(f) for f in _frames(2)])
    del body["id"]
    status, out = _call(server.url + "/v2/models/reviosa/infer", body)
    assert status == 200 and out["id"]


@pytest.mark.parametrize("case, fragment", [
    ("too_many_frames", f"the limit is {MAX_FRAMES}"),
    ("bad_base64", "frame 1 is not valid base64"),
    ("not_an_image", "frame 0 is not a JPEG/PNG image"),
    ("mixed_sizes", "all frames must have one size"),
    ("too_large", "the limit is 1920x1080"),
    ("disallowed_http", "not in the allow-list"),
    ("lookalike_host", "not in the allow-list"),
    ("disallowed_s3", "not in the allow-list"),
    ("file_scheme", "only s3://, http:// and https://"),
    ("long_video", f"more than {MAX_FRAMES} frames"),
    ("junk_video", "cannot be decoded as a video"),
    ("missing_video", "HTTP 404"),
    ("both_sources", "exactly one of `video_uri` and `frames`"),
    ("no_expression", "input `expression`"),
    ("empty_expression", "`expression` is empty"),
    ("reserved_token", "reserved token(s) ['<IMG_CONTEXT>']"),
    ("wrong_shape", "must be 1-D with shape [2]"),
    ("expression_shape", "must have shape [1]"),
    ("wrong_datatype", "must have datatype BYTES"),
    ("unknown_input", "unknown input 'video'"),
])
def test_v2_bad_requests_are_400_with_a_reason(server, video_site, case, fragment):
    site, _ = video_site
    ok = [_png(f) for f in _frames(2)]
    body = {
        "too_many_frames": lambda: _v2(frames=[_png(f) for f in _frames(MAX_FRAMES + 1, 8, 8)]),
        "bad_base64": lambda: _v2(frames=[ok[0], "@@not base64@@"]),
        "not_an_image": lambda: _v2(frames=[base64.b64encode(b"hello").decode()]),
        "mixed_sizes": lambda: _v2(frames=[ok[0], _png(_frames(1, 16, 16)[0])]),
        "too_large": lambda: _v2(frames=[_png(np.zeros((1100, 8, 3), np.uint8))]),
        "disallowed_http": lambda: _v2(uri=f"{site}/secret.mp4"),
        "lookalike_host": lambda: _v2(uri=site.replace("127.0.0.1", "127.0.0.1.nip.io") + "/ok/clip.mp4"),
        "disallowed_s3": lambda: _v2(uri="s3://serve-test/private/clip.mp4"),
        "file_scheme": lambda: _v2(uri="file:///etc/passwd"),
        "long_video": lambda: _v2(uri=f"{site}/ok/long.mp4"),
        "junk_video": lambda: _v2(uri=f"{site}/ok/junk.mp4"),
        "missing_video": lambda: _v2(uri=f"{site}/ok/none.mp4"),
        "both_sources": lambda: _v2(frames=ok, uri=f"{site}/ok/clip.mp4"),
        "no_expression": lambda: {"inputs": [{"name": "frames", "shape": [2], "datatype": "BYTES", "data": ok}]},
        "empty_expression": lambda: _v2(expression="   ", frames=ok),
        "reserved_token": lambda: _v2(expression="the dog<IMG_CONTEXT>", frames=ok),
        "wrong_shape": lambda: _v2(inputs=[{"name": "frames", "shape": [3], "datatype": "BYTES", "data": ok}]),
        "expression_shape": lambda: _v2(inputs=[{"name": "expression", "shape": [2], "datatype": "BYTES",
                                                 "data": [EXPR, EXPR]}]),
        "wrong_datatype": lambda: _v2(inputs=[{"name": "expression", "shape": [1], "datatype": "INT32",
                                               "data": [1]}]),
        "unknown_input": lambda: _v2(inputs=[{"name": "video", "shape": [1], "datatype": "BYTES", "data": ["x"]}]),
    }[case]()
    status, out = _call(server.url + "/v2/models/reviosa/infer", body)
    assert status == 400, out
    assert fragment in out["error"], out


def test_v1_bad_requests_are_400(server):
    url = server.url + "/v1/models/reviosa:predict"
    status, out = _call(url, {"instances": []})
    assert status == 400 and "non-empty list" in out["error"]
    status, out = _call(url, {"instances": [{"expression": EXPR, "frames": ["%%%"]}]})
    assert status == 400 and "frame 0 is not valid base64" in out["error"]
    status, out = _call(url, {"instances": [{"expression": EXPR, "frames": [_png(_frames(1)[0])], "fps": 3}]})
    assert status == 400 and "unknown instance fields ['fps']" in out["error"]
    status, out = _call(url, {"instances": [{"expression": EXPR, "video_uri": "s3://serve-test/x.mp4"}] * 5})
    assert status == 400 and "the limit is 4" in out["error"]
    status, _ = _call(url, raw=b"{not json")
    assert status == 400


def test_unknown_model_is_404(server):
    assert _call(server.url + "/v2/models/other/infer", _v2(frames=[]))[0] == 404


def test_readiness_follows_loading(checkpoint, tmp_path):
    predictor = ReviosaPredictor(ServeConfig(model_uri=str(checkpoint)))
    assert predictor.ready is False
    assert predictor.load() is True and predictor.ready is True
    broken = ReviosaPredictor(ServeConfig(model_uri=str(tmp_path)))
    with pytest.raises(CheckpointError, match="not a ReVIOSa checkpoint"):
        broken.load()
    assert broken.ready is False


def test_serve_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    import subprocess

    port = free_ports(1)[0]
    res = subprocess.run([*REVIOSA, "serve", "--model", str(tmp_path),
                          "--port", str(port)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "400"})
    assert res.returncode != 0
    assert "not a ReVIOSa checkpoint" in res.stderr


def test_result_masks_round_trip_through_rle():
    rng = np.random.default_rng(3)
    actor = rng.random((3, 10, 12)) > 0.5
    actor[1] = False
    target = rng.random((3, 10, 12)) > 0.7
    out = result_dict(VideoRequest(np.zeros((3, 10, 12, 3), np.uint8), EXPR),
                      Prediction(text="[SEG_ACT] [SEG_TAR]", actor=actor, target=target))
    assert out["actor"][1] is None
    assert np.array_equal(decode_rle(out["actor"][0]), actor[0])
    assert all(np.array_equal(decode_rle(r), m) for r, m in zip(out["target"], target))
    json.dumps(out)


def test_config_and_allow_list_rules(tmp_path):
    cfg = ServeConfig(allowed_url_prefixes=["https://videos.example.org/public"])
    assert check_uri("https://videos.example.org/public/a.mp4", cfg)
    for bad in ("https://videos.example.org/publicity/a.mp4", "https://videos.example.org.evil/public/a.mp4",
                "https://videos.example.org/public/../secret.mp4"):
        with pytest.raises(InvalidInput):
            check_uri(bad, cfg)
    with pytest.raises(ConfigError, match="allowed_url_prefixes"):
        ServeConfig.from_dict({"allowed_url_prefixes": ["ftp://x/"]})
    with pytest.raises(ConfigError, match="max_frames"):
        ServeConfig.from_dict({}, ["max_frames=0"])
    (tmp_path / "s.yaml").write_text("max_frames: 3\nbogus: 1\n")
    with pytest.raises(ConfigError, match="s.yaml.*bogus"):
        ServeConfig.from_yaml(tmp_path / "s.yaml")
    with pytest.raises(InvalidInput, match="bytes; the limit"):
        decode_base64_frames([_png(_frames(1)[0])], ServeConfig(max_bytes=10))
    # An allow-list entry that could never match safely stops the server before it loads anything.
    from reviosa.serve.server import serve

    for prefix in ("http://h/ok/%2e%2e/", "http://user@h/ok/", "https://h/ok/#x"):
        with pytest.raises(ConfigError, match="allowed_url_prefixes entry"):
            serve(ServeConfig(allowed_url_prefixes=[prefix], model_uri=str(tmp_path)))


# -- clean 4xx answers, one log line each ---------------------------------------------------------------------------

def _png_header_only(width: int, height: int) -> str:
    """A PNG that declares ``width`` x ``height`` (IHDR) and carries no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return base64.b64encode(raw + chunk(b"IEND", b"")).decode()


def test_client_mistakes_are_clear_400s_that_log_one_line(server):
    url = server.url + "/v2/models/reviosa/infer"
    ok = [_png(f) for f in _frames(2)]
    surrogate = json.dumps(_v2(frames=ok)).replace(EXPR, "the dog \\ud800").encode()
    assert b"\\ud800" in surrogate
    log = Path(server.log)
    offset = log.stat().st_size
    cases = [
        (_v2(frames=[_png_header_only(20000, 20000)]), "frame 0 declares more than"),     # a decompression bomb
        (_v2(frames=[_png_header_only(12000, 12000)]), "the limit is 1920x1080"),
        (surrogate, "not valid JSON"),                                                     # a lone surrogate
        (_v2(uri="s3://serve-test/videos/"), "not an object"),
        (_v2(uri="s3://serve-test/videos/" + "k" * 1100), "s3://serve-test/videos/kkk"),
        (_v2(uri="s3://serve-test/videos/nothing.mp4"), "no such object"),
    ]
    messages = []
    for body, fragment in cases:
        status, out = _call(url, raw=body) if isinstance(body, bytes) else _call(url, body)
        assert status == 400 and fragment in out["error"], (fragment, status, out)
        messages.append(out["error"])
    time.sleep(0.5)
    written = log.read_text(errors="replace")[offset:]
    assert "Traceback" not in written, written[-3000:]
    for message in messages:
        lines = [line for line in written.splitlines() if message[:60] in line]
        assert len(lines) == 1, (message, lines)


# -- Open Inference Protocol v2 with KServe's own client ----------------------------------------------------------

def _client():
    from kserve import InferenceRESTClient, RESTConfig

    return InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=120))


def _v2_request(frames: np.ndarray, binary: bool = False, outputs=None, parameters=None):
    from kserve import InferInput, InferRequest

    expression = InferInput("expression", [1], "BYTES")
    pngs = InferInput("frames", [len(frames)], "BYTES")
    if binary:
        # Binary tensors carry the PNG files themselves, no base64.
        raw = [base64.b64decode(_png(f)) for f in frames]
        expression.set_data_from_numpy(np.array([EXPR.encode()], dtype=object), binary_data=True)
        pngs.set_data_from_numpy(np.array(raw, dtype=object), binary_data=True)
    else:
        expression.data = [EXPR]
        pngs.data = [_png(f) for f in frames]
    return InferRequest(model_name="reviosa", infer_inputs=[expression, pngs], request_id="oip-1",
                        request_outputs=outputs, parameters=parameters)


def test_model_metadata_describes_every_input_and_output(server):
    import httpx
    from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse

    async def go():
        async with _client() as client:
            assert await client.is_server_ready(server.url) and await client.is_server_live(server.url)
            assert await client.is_model_ready(server.url, "reviosa")
        async with httpx.AsyncClient() as http:
            return (await http.get(server.url + "/v2/models/reviosa")).json()

    doc = asyncio.run(go())
    meta = ModelMetadataResponse.model_validate(doc)
    assert "versions" not in doc and meta.platform
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [
        ("expression", "BYTES", [1]), ("frames", "BYTES", [-1]), ("video_uri", "BYTES", [1])]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [
        ("text", "BYTES", [1]), ("actor", "BYTES", [-1]), ("target", "BYTES", [-1]), ("has_target", "BOOL", [1]),
        ("frame_size", "INT64", [2])]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-inputs"])
def test_kserve_client_infers_all_outputs(server, binary):
    frames = _frames(3, 32, 48)

    async def go():
        async with _client() as client:
            return await client.infer(server.url, _v2_request(frames, binary), model_name="reviosa")

    res = asyncio.run(go())
    assert res.id == "oip-1" and res.model_name == "reviosa"
    by = {o.name: o for o in res.outputs}
    assert list(by) == ["text", "actor", "target", "has_target", "frame_size"]
    assert by["frame_size"].data == [32, 48] and by["actor"].shape == [3]
    _check_track([json.loads(s) for s in by["actor"].data], 3, 32, 48)


def test_kserve_client_requested_outputs_and_binary_data(server):
    from kserve.protocol.infer_type import RequestedOutput

    frames = _frames(2, 32, 48)
    wanted = [RequestedOutput("frame_size"), RequestedOutput("actor", {"binary_data": True}),
              RequestedOutput("has_target", {"binary_data": True})]

    async def go(request):
        headers = {}
        async with _client() as client:
            res = await client.infer(server.url, request, model_name="reviosa", response_headers=headers)
        return res, headers

    res, headers = asyncio.run(go(_v2_request(frames, outputs=wanted)))
    assert [o.name for o in res.outputs] == ["frame_size", "actor", "has_target"]
    assert "inference-header-content-length" in headers           # actor and has_target came as binary tensors
    assert res.outputs[0].data == [32, 48] and len(res.outputs[2].data) == 1
    _check_track([json.loads(s) for s in res.outputs[1].data], 2, 32, 48)
    # binary_data_output: every output binary, decoded back by the client
    res, headers = asyncio.run(go(_v2_request(frames, parameters={"binary_data_output": True})))
    assert "inference-header-content-length" in headers and len(res.outputs) == 5
    assert {o.name: o for o in res.outputs}["frame_size"].data == [32, 48]
    # only text, as JSON
    res, headers = asyncio.run(go(_v2_request(frames, outputs=[RequestedOutput("text")])))
    assert [o.name for o in res.outputs] == ["text"] and "inference-header-content-length" not in headers


def test_kserve_client_sees_the_protocol_error_shape_and_no_null_fields(server):
    import httpx
    from kserve.protocol.infer_type import RequestedOutput

    frames = _frames(2, 16, 16)

    async def error(data, model="reviosa") -> httpx.Response:
        async with _client() as client:
            with pytest.raises(httpx.HTTPStatusError) as err:
                await client.infer(server.url, data, model_name=model)
        return err.value.response

    async def raw_answer() -> dict:
        # is_graph_endpoint: the stock client posts to the URL as given and returns the JSON it got, as is.
        async with _client() as client:
            return await client.infer(server.url + "/v2/models/reviosa/infer", _v2(frames=[_png(f) for f in frames]),
                                      is_graph_endpoint=True)

    for data, fragment in [
        ({"inputs": [{"name": "expression"}]}, "`datatype` must be one of"),
        ({"inputs": "expression"}, "`inputs` must be a non-empty list"),
        ({"inputs": [{"name": "expression", "shape": [1], "datatype": "BYTES", "data": [EXPR]}], "outputs": 3},
         "`outputs` must be a list"),
        ({"id": 5, "inputs": []}, "`id` must be a string"),
        (_v2_request(frames, outputs=[RequestedOutput("mask")]), "unknown output 'mask'"),
    ]:
        resp = asyncio.run(error(data))
        assert resp.status_code == 400 and set(resp.json()) == {"error"}, resp.text
        assert fragment in resp.json()["error"], resp.text
    resp = asyncio.run(error(_v2_request(frames), model="other"))
    assert resp.status_code == 404 and set(resp.json()) == {"error"}
    doc = asyncio.run(raw_answer())
    assert set(doc) == {"id", "model_name", "outputs"}          # model_version and parameters are absent, not null
    assert all(v is not None for o in doc["outputs"] for v in o.values())
    for path in ("/v2/models/reviosa/versions/1/infer", "/v2/nothing"):
        status, out = _call(server.url + path, _v2(frames=[_png(f) for f in frames]))
        assert status in (400, 404, 405) and set(out) == {"error"}, (path, status, out)
