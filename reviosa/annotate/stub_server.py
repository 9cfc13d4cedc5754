"""An OpenAI-compatible chat-completions server that answers from the request's JSON schema, for tests and benchmarks.

It stands in for a paid LLM API and speaks the same wire protocol: ``POST /v1/chat/completions`` with
``response_format: json_schema`` returns a chat-completion object whose content is a schema-valid,
deterministic answer (object indices are taken from the ``[i]`` labels in the prompt). Faults can be
injected: a delay per request, 429s with ``Retry-After``, 500s, invalid JSON. ``GET /stats`` reports
every request's content address (the same key the annotation cache uses) and the peak concurrency.

Run: ``python -m reviosa.annotate.stub_server --port 8011 --delay 0.05``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from reviosa.annotate.answering import RETRY_PROMPT

_RETRY_MARK = RETRY_PROMPT.split("{", 1)[0]
_WORDS = ("small", "red", "shape", "moving", "left", "object", "round", "bright", "slowly", "quickly", "blue", "ball")


@dataclass
class Faults:
    """Which failures to inject; counts are over the server's lifetime."""

    delay_s: float = 0.0
    first_429: int = 0  # the first N requests get 429 with Retry-After: 0
    every_500: int = 0  # every Nth request gets a 500
    invalid_rate: float = 0.0  # share of first attempts answered with broken JSON (deterministic per request)
    always_invalid: set[str] = field(default_factory=set)  # schema names always answered with broken JSON


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    keys: list[str] = field(default_factory=list)  # content address of every answered request, in order
    retries_seen: int = 0  # requests that carried the "previous answer is invalid" feedback


def request_key(body: dict[str, Any]) -> str:
    """The content address of a request body (identical to ``ChatRequest.cache_key``)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def answer_for(schema: dict[str, Any], prompt: str, key: str) -> Any:
    """A deterministic instance of ``schema`` whose integers are indices labelled ``[i]`` in the prompt."""
    rng = random.Random(key)
    indices = sorted({int(i) for i in re.findall(r"\[(\d+)\]", prompt)}) or [0, 1]

    def gen(s: dict[str, Any], used: list[int]) -> Any:
        t = s.get("type")
        if "enum" in s:
            return rng.choice(s["enum"])
        if t == "object":
            mine: list[int] = []
            return {k: gen(v, mine) for k, v in s.get("properties", {}).items()}
        if t == "array":
            n = min(max(s.get("minItems", 0), 1), s.get("maxItems", 3))
            mine = []
            return [gen(s["items"], mine) for _ in range(n)]
        if t == "integer":
            free = [i for i in indices if i not in used] or indices
            used.append(rng.choice(free))
            return used[-1]
        if t == "boolean":
            return True
        if t == "number":
            return round(rng.random(), 3)
        text = "the " + " ".join(rng.choice(_WORDS) for _ in range(3))
        return text[: s.get("maxLength", 200)]

    return gen(schema, [])


def make_app(faults: Faults) -> Any:
    """The Starlette application."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    stats = Stats()

    async def chat(request: Request) -> Any:
        stats.requests += 1
        n = stats.requests
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            try:
                body = await request.json()
                messages = body["messages"]
                fmt = body["response_format"]["json_schema"]
                schema, name = fmt["schema"], fmt["name"]
                assert isinstance(messages, list) and body.get("model")
            except (ValueError, KeyError, TypeError, AssertionError):
                return JSONResponse({"error": {"message": "expected a chat-completions body with model, messages and "
                                               "response_format.json_schema", "type": "invalid_request_error"}},
                                    status_code=400)
            if n <= faults.first_429:
                return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                    status_code=429, headers={"Retry-After": "0"})
            if faults.every_500 and n % faults.every_500 == 0:
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=500)
            key = request_key(body)
            prompt = _prompt_text(messages)
            is_retry = _RETRY_MARK in prompt
            stats.retries_seen += int(is_retry)
            broken = name in faults.always_invalid or (
                not is_retry and random.Random(key + "invalid").random() < faults.invalid_rate)
            content = '{"oops": ' if broken else json.dumps(answer_for(schema, prompt, key))
            stats.answered += 1
            stats.keys.append(key)
            usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return JSONResponse({
                "id": f"chatcmpl-{key[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}]})
        finally:
            stats.in_flight -= 1

    async def stats_view(request: Request) -> Any:
        return JSONResponse(stats.__dict__)

    async def health(request: Request) -> Any:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/stats", stats_view), Route("/health", health)])


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until killed."""
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--first-429", type=int, default=0)
    p.add_argument("--every-500", type=int, default=0)
    p.add_argument("--invalid-rate", type=float, default=0.0)
    p.add_argument("--always-invalid", action="append", default=[], help="schema name answered with broken JSON")
    a = p.parse_args(argv)
    faults = Faults(a.delay, a.first_429, a.every_500, a.invalid_rate, set(a.always_invalid))
    uvicorn.run(make_app(faults), host="127.0.0.1", port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
