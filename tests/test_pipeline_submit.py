"""``reviosa pipeline submit`` against a small KFP API double speaking the v2beta1 REST wire protocol.

A real KFP API server needs a cluster (Argo, MySQL, object store); this double implements the endpoints the
``kfp.Client`` of the SDK calls for upload, versioning, experiments and runs, and records every request.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import threading
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from fixtures.wire import send_json
from typer.testing import CliRunner

from reviosa.cli import app

API = "/apis/v2beta1"


class KfpApiDouble(http.server.BaseHTTPRequestHandler):
    """The subset of the KFP v2beta1 REST API used by ``kfp.Client`` upload/run calls."""

    state: dict

    def log_message(self, *a):
        pass

    def _send(self, code: int, body: dict) -> None:
        send_json(self, code, body)

    def _record(self, body: bytes = b"") -> tuple[str, dict]:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.state["requests"].append((self.command, url.path, query))
        return url.path, query

    @staticmethod
    def _now() -> str:
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _filter_value(query: dict, key: str) -> str | None:
        if "filter" not in query:
            return None
        for pred in json.loads(query["filter"]).get("predicates", []):
            if pred.get("key") == key:
                return pred.get("string_value", pred.get("stringValue"))
        return None

    def do_GET(self):  # noqa: N802 - http.server naming
        path, query = self._record()
        st = self.state
        if path == f"{API}/healthz":
            return self._send(200, {"commit_sha": "double", "tag_name": "2.17.0", "multi_user": False})
        if path == f"{API}/pipelines":
            name = self._filter_value(query, "display_name") or self._filter_value(query, "name")
            found = [p for p in st["pipelines"].values() if name is None or p["display_name"] == name]
            return self._send(200, {"pipelines": found, "total_size": len(found)} if found else {})
        if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[-2]
            versions = sorted((v for v in st["versions"].values() if v["pipeline_id"] == pid),
                              key=lambda v: v["created_at"], reverse="desc" in query.get("sort_by", ""))
            return self._send(200, {"pipeline_versions": versions, "total_size": len(versions)})
        if path == f"{API}/experiments":
            name = self._filter_value(query, "display_name") or self._filter_value(query, "name")
            found = [e for e in st["experiments"].values() if name is None or e["display_name"] == name]
            return self._send(200, {"experiments": found, "total_size": len(found)} if found else {})
        return self._send(404, {"error_message": f"no route {path}", "code": 5})

    def _upload(self) -> tuple[str, str]:
        length = int(self.headers["Content-Length"])
        raw = self.rfile.read(length)
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
        part = next(p for p in msg.iter_parts() if p.get_param("name", header="content-disposition") == "uploadfile")
        return part.get_filename(), part.get_payload(decode=True).decode()

    def do_POST(self):  # noqa: N802
        st = self.state
        path, query = self._record()
        if path in (f"{API}/pipelines/upload", f"{API}/pipelines/upload_version"):
            filename, text = self._upload()
            docs = list(yaml.safe_load_all(text))
            if not docs or "pipelineInfo" not in docs[0]:
                return self._send(400, {"error_message": "not a pipeline spec", "code": 3})
            if path.endswith("/upload"):
                pid = str(uuid.uuid4())
                st["pipelines"][pid] = {"pipeline_id": pid, "display_name": query.get("name", filename),
                                        "created_at": self._now()}
                name = query.get("name", filename)
            else:
                pid = query["pipelineid"]
                if pid not in st["pipelines"]:
                    return self._send(404, {"error_message": f"pipeline {pid} not found", "code": 5})
                name = query["name"]
            vid = str(uuid.uuid4())
            st["versions"][vid] = {"pipeline_id": pid, "pipeline_version_id": vid, "display_name": name,
                                   "created_at": self._now()}
            st["specs"][vid] = text
            return self._send(200, st["pipelines"][pid] if path.endswith("/upload") else st["versions"][vid])
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if path == f"{API}/experiments":
            eid = str(uuid.uuid4())
            st["experiments"][eid] = {"experiment_id": eid, "display_name": body["display_name"],
                                      "created_at": self._now(), "storage_state": "AVAILABLE"}
            return self._send(200, st["experiments"][eid])
        if path == f"{API}/runs":
            ref = body.get("pipeline_version_reference") or {}
            if ref.get("pipeline_version_id") not in st["versions"]:
                return self._send(400, {"error_message": "unknown pipeline version", "code": 3})
            if body.get("experiment_id") not in st["experiments"]:
                return self._send(400, {"error_message": "unknown experiment", "code": 3})
            rid = str(uuid.uuid4())
            run = dict(body, run_id=rid, state="PENDING", created_at=self._now())
            st["runs"][rid] = run
            return self._send(200, run)
        return self._send(404, {"error_message": f"no route {path}", "code": 5})


@pytest.fixture
def kfp_api():
    state = {"pipelines": {}, "versions": {}, "experiments": {}, "runs": {}, "specs": {}, "requests": []}
    handler = type("Handler", (KfpApiDouble,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_submit_uploads_the_spec_then_a_version_and_starts_runs(kfp_api, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads/writes its context file under ~/.config/kfp
    url, state = kfp_api
    args = ["pipeline", "submit", "--host", url, "--pipeline", "evaluation", "--param", "model_source=s3://m/tiny",
            "--param", "split_source=data-v2", "--param", "max_videos=3", "--run-name", "eval-1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(state["pipelines"]) == 1 and len(state["runs"]) == 1
    (pipeline,) = state["pipelines"].values()
    assert pipeline["display_name"] == "reviosa-evaluation"
    (run,) = state["runs"].values()
    assert run["display_name"] == "eval-1"
    assert run["runtime_config"]["parameters"] == {"model_source": "s3://m/tiny", "split_source": "data-v2",
                                                   "max_videos": 3}
    (spec,) = state["specs"].values()
    docs = list(yaml.safe_load_all(spec))
    assert docs[0]["pipelineInfo"]["name"] == "reviosa-evaluation" and len(docs) == 2
    assert f"run_id: {run['run_id']}" in res.output and f"/#/runs/details/{run['run_id']}" in res.output

    # Second submit: same pipeline → a new version of it, the existing experiment reused, a second run.
    res = CliRunner().invoke(app, args[:-2] + ["--no-cache"])
    assert res.exit_code == 0, res.output
    assert len(state["pipelines"]) == 1 and len(state["versions"]) == 2 and len(state["experiments"]) == 1
    runs = list(state["runs"].values())
    assert runs[1]["pipeline_version_reference"]["pipeline_version_id"] != runs[0]["pipeline_version_reference"][
        "pipeline_version_id"]
    assert runs[1]["pipeline_version_reference"]["pipeline_id"] == pipeline["pipeline_id"]
    assert any(m == "POST" and p.endswith("/pipelines/upload_version") for m, p, _ in state["requests"])


def test_submit_reports_a_missing_spec_and_an_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["pipeline", "submit", "--host", "http://127.0.0.1:9",
                                   "--spec", str(tmp_path / "none.yaml")])
    # Rich wraps the message inside a box at any width: compare it with the box and line breaks removed.
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code != 0 and "does not exist" in flat
    res = CliRunner().invoke(app, ["pipeline", "submit", "--host", "http://127.0.0.1:9", "--pipeline", "evaluation"])
    assert res.exit_code == 1 and "KFP server http://127.0.0.1:9 cannot be reached" in res.output


def test_submit_reports_a_server_refusal(kfp_api, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    url, state = kfp_api
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: a mapping\n")
    res = CliRunner().invoke(app, ["pipeline", "submit", "--host", url, "--spec", str(bad)])
    assert res.exit_code == 1 and "answered 400" in res.output and "not a pipeline spec" in res.output
    assert not state["pipelines"] and not state["runs"]
