"""A real model: SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible server answers stages 2 and 4.

Stages 1 and 3 (vision) come from the scene graph; the text stages go over HTTP with JSON-schema
structured output, through the same validation as any model. The server runs on 127.0.0.1 only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_annotate import check_roles, make_world

from reviosa.annotate.config import AnnotateConfig
from reviosa.annotate.local_servers import llama_server, smollm2_gguf
from reviosa.annotate.pipeline import record_path, run_annotation
from reviosa.data.format import ExpressionType, InterRVOSDataset


@pytest.mark.slow
def test_text_stages_through_a_real_llm_server(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_world(src, n_videos=1, n_objects=3)
    with llama_server(smollm2_gguf(), tmp_path / "llama.log", threads=2) as server:
        cfg = AnnotateConfig(backend="openai", stage_backend={1: "offline", 3: "offline"}, base_url=server.url,
                             model="smollm2", max_tokens=160, concurrency=1, validation_attempts=2,
                             max_expressions_per_kind=1, max_text_chars=60)
        report = run_annotation(src, tmp_path / "out", cfg, progress=False)
        again = run_annotation(src, tmp_path / "out2", cfg, cache_dir=tmp_path / "out" / ".cache" / "answers",
                               progress=False)

    calls = report["calls"]
    # 3 objects + 1 motion-group request (stage 2), 1 interaction (stage 4); retries only for invalid answers
    assert calls["fresh_calls_per_stage"].keys() == {"2", "4"}
    invalid_failures = sum(1 for f in json.loads(record_path(tmp_path / "out", "vid000").read_text())["failures"]
                           if f["kind"] == "invalid")
    assert calls["fresh_calls"] == 5 + calls["invalid_answers"] - invalid_failures
    assert calls["prompt_tokens"] > 0 and calls["completion_tokens"] > 0
    assert again["calls"]["fresh_calls"] == 0 and again["calls"]["cached_calls"] == calls["fresh_calls"]

    ds = InterRVOSDataset.load(tmp_path / "out")
    rec = json.loads(record_path(tmp_path / "out", "vid000").read_text())
    model_texts = [t for o in rec["objects"].values() if o["expressions"] for v in o["expressions"].values()
                   for t in v]
    assert model_texts and all(isinstance(t, str) and t.strip() for t in model_texts)
    singles = [e for _, e in ds.iter_expressions() if e.type is ExpressionType.SINGLE]
    assert {e.text for e in singles} <= set(model_texts)
    assert report["failures"] == len(rec["failures"])
    if rec["interactions"][0]["expressions"] is not None:
        assert check_roles(tmp_path / "out") == report["expressions_per_type"]["interaction"]
