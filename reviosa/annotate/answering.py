"""Ask, validate, retry with the error fed back, record failures: the one path every model answer takes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reviosa.annotate.backends import Backend, BackendError, ChatRequest
from reviosa.annotate.cache import AnswerCache
from reviosa.annotate.config import AnnotateConfig
from reviosa.annotate.prompts import render
from reviosa.annotate.schemas import limit_schema, response_schema

M = TypeVar("M", bound=BaseModel)

RETRY_PROMPT = ("Your previous answer is invalid: {error}\n"
                "Reply again with only a JSON object that matches the schema.")


@dataclass
class CallStats:
    """Counts of model calls and tokens over a run (fresh calls only cost tokens)."""

    fresh_calls: Counter = field(default_factory=Counter)
    cached_calls: Counter = field(default_factory=Counter)
    offline_answers: int = 0
    http_retries: int = 0
    invalid_answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"fresh_calls": sum(self.fresh_calls.values()), "cached_calls": sum(self.cached_calls.values()),
                "fresh_calls_per_stage": {str(k): v for k, v in sorted(self.fresh_calls.items())},
                "offline_answers": self.offline_answers, "http_retries": self.http_retries,
                "invalid_answers": self.invalid_answers,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.prompt_tokens + self.completion_tokens}


@dataclass
class Outcome:
    """A validated answer, or a failure record with the raw text of the last answer."""

    answer: BaseModel | None = None
    failure: dict[str, Any] | None = None


class Answerer:
    """Sends requests through a backend with bounded concurrency, a cache and schema validation."""

    def __init__(self, cfg: AnnotateConfig, backends: dict[int, Backend], cache: AnswerCache | None,
                 model_stages: set[int]):
        self.cfg, self.backends, self.cache, self.model_stages = cfg, backends, cache, model_stages
        self.stats = CallStats()
        self._slots = asyncio.Semaphore(cfg.concurrency)

    async def ask(self, stage: int, model: type[M], user: str | list[dict[str, Any]], *, objects: set[int],
                  task: dict[str, Any], where: dict[str, Any]) -> Outcome:
        """Ask until the answer validates against ``model`` with these object indices; never raises for bad answers."""
        system = render("system", self.cfg.prompt_version)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        raw, error = None, None
        for attempt in range(self.cfg.validation_attempts):
            schema = limit_schema(response_schema(model), max_items=self.cfg.max_expressions_per_kind,
                                  max_chars=self.cfg.max_text_chars)
            request = ChatRequest(stage, model.__name__, schema, list(messages), task)
            try:
                raw = await self._complete(request)
            except BackendError as err:
                return Outcome(failure={**where, "stage": stage, "kind": "transport", "error": str(err),
                                        "raw": raw, "attempts": attempt + 1})
            try:
                return Outcome(answer=model.model_validate_json(raw, context={"objects": objects}))
            except ValidationError as err:
                error = _short_error(err)
            self.stats.invalid_answers += 1
            messages += [{"role": "assistant", "content": raw},
                         {"role": "user", "content": RETRY_PROMPT.format(error=error)}]
        return Outcome(failure={**where, "stage": stage, "kind": "invalid", "error": error, "raw": raw,
                                "attempts": self.cfg.validation_attempts})

    async def _complete(self, request: ChatRequest) -> str:
        use_cache = self.cache is not None and request.stage in self.model_stages
        key = request.cache_key(self.cfg) if use_cache else ""
        if use_cache and (hit := self.cache.get(key)) is not None:  # type: ignore[union-attr]
            self.stats.cached_calls[request.stage] += 1
            return hit.content
        if request.stage not in self.model_stages:  # the offline backend: no model, nothing to count or cache
            self.stats.offline_answers += 1
            return (await self.backends[request.stage].complete(request)).content
        async with self._slots:
            response = await self.backends[request.stage].complete(request)
        self.stats.fresh_calls[request.stage] += 1
        self.stats.http_retries += response.retries
        self.stats.prompt_tokens += response.prompt_tokens
        self.stats.completion_tokens += response.completion_tokens
        if use_cache:
            self.cache.put(key, response)
        return response.content

    async def aclose(self) -> None:
        """Close every backend once."""
        for backend in {id(b): b for b in self.backends.values()}.values():
            await backend.aclose()


def _short_error(err: ValidationError) -> str:
    """One line per problem, without pydantic's documentation links."""
    if any(e["type"] == "json_invalid" for e in err.errors()):
        return "not valid JSON: " + "; ".join(e["msg"] for e in err.errors())
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors())


def dumps(obj: Any) -> str:
    """Stable JSON for records that must be byte-identical across runs."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False)
