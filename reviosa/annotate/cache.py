"""A content-addressed cache of model answers: the same request is never paid for twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reviosa.annotate.backends import ChatResponse
from reviosa.data.atomic import atomic_write_text


class AnswerCache:
    """``<root>/<key[:2]>/<key>.json`` per request key; entries are written atomically, never modified."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> ChatResponse | None:
        """The cached answer, or None (also for an unreadable entry, which is then simply re-asked)."""
        try:
            raw = json.loads(self._path(key).read_text(encoding="utf-8"))
            return ChatResponse(raw["content"], int(raw["prompt_tokens"]), int(raw["completion_tokens"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, response: ChatResponse) -> None:
        """Store an answer."""
        atomic_write_text(self._path(key), json.dumps({"content": response.content,
                                                       "prompt_tokens": response.prompt_tokens,
                                                       "completion_tokens": response.completion_tokens}))

    def keys(self) -> set[str]:
        """Every cached request key."""
        return {p.stem for p in self.root.glob("*/*.json")} if self.root.is_dir() else set()
