"""Answer sources: an OpenAI-compatible HTTP client and the offline scene-graph backend share one interface.

A backend turns a :class:`ChatRequest` into the model's raw text; parsing and validation happen above it
(:mod:`reviosa.annotate.answering`), so offline answers go through exactly the same checks as real ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from reviosa.annotate.config import AnnotateConfig


class BackendError(RuntimeError):
    """A request failed for good (non-retryable status, or retries exhausted)."""


@dataclass
class ChatRequest:
    """One chat completion: the wire messages and schema, plus the task the offline backend answers from."""

    stage: int
    schema_name: str
    schema: dict[str, Any]
    messages: list[dict[str, Any]]
    task: dict[str, Any] = field(default_factory=dict)

    def body(self, cfg: AnnotateConfig) -> dict[str, Any]:
        """The OpenAI chat-completions request body with JSON-schema structured output."""
        return {
            "model": cfg.model,
            "messages": self.messages,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": self.schema_name, "strict": True, "schema": self.schema}},
        }

    def cache_key(self, cfg: AnnotateConfig) -> str:
        """Content address of the request: everything that can change the answer, nothing else."""
        blob = json.dumps(self.body(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ChatResponse:
    """The raw text of an answer and its token usage."""

    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


class Backend(Protocol):
    """Anything that answers chat requests."""

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None: ...


class OpenAIBackend:
    """Chat completions over HTTP against OpenAI, vLLM, llama.cpp or an in-cluster KServe LLM."""

    def __init__(self, cfg: AnnotateConfig):
        self.cfg = cfg
        self._client: Any = None  # made inside the running event loop, on first use
        self._rng = random.Random(0)

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            cfg = self.cfg
            headers = {"Authorization": f"Bearer {cfg.api_key()}"} if cfg.api_key() else {}
            limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
            self._client = httpx.AsyncClient(base_url=cfg.base_url.rstrip("/") + "/", headers=headers, limits=limits,
                                             timeout=httpx.Timeout(cfg.request_timeout_s))
        return self._client

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """POST the request; back off and retry on 429, 5xx and connection errors."""
        import httpx

        body, last = request.body(self.cfg), ""
        for attempt in range(self.cfg.http_retries + 1):
            retry_after = None
            try:
                resp = await self._http().post("chat/completions", json=body)
            except (httpx.TransportError, httpx.TimeoutException) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code == 200:
                    return _parse_completion(resp, attempt)
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise BackendError(last)
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt == self.cfg.http_retries:
                break
            # Exponential backoff with jitter, unless the server said how long to wait.
            delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** attempt) * (0.5 + self._rng.random())
            await asyncio.sleep(retry_after if retry_after is not None else delay)
        raise BackendError(f"gave up after {self.cfg.http_retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _parse_completion(resp: Any, retries: int) -> ChatResponse:
    try:
        data = resp.json()
        content = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise BackendError(f"not a chat-completions response ({err}): {resp.text[:300]}") from None
    if content is None:
        raise BackendError(f"answer has no content (finish_reason {data['choices'][0].get('finish_reason')!r})")
    return ChatResponse(content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                        retries)
