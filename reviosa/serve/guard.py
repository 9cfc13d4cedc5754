"""ASGI middleware in front of every route: the Host allow-list, the body limit and admission to inference.

It runs before a body is read: a Host the server does not serve is 400; a ``Content-Length`` over
``max_body_bytes`` is 413 at once, and a body that streams past it (chunked, or lying) is stopped at the limit; an
inference request finds ``max_waiting`` others waiting is 503 with ``Retry-After`` (its body is drained, not kept,
so clients that send the whole body first still read the answer); an admitted request has ``body_timeout_s`` to
send its body (408), so slow senders cannot hold the queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson

from reviosa.serve.config import ServeConfig, split_host
from reviosa.serve.errors import BodyTimeout, BodyTooLarge
from reviosa.serve.model import Gate

log = logging.getLogger(__name__)

# Kubelet probes and Prometheus address a pod by its IP, so these read-only paths answer any Host.
PROBE_PATHS = re.compile(r"^/(metrics|v2/health/(live|ready)|v2/models/[^/]+(/versions/[^/]+)?/ready"
                         r"|v1/models/[^/:]+)?$")
INFERENCE_PATHS = re.compile(r"^/(v2/models/[^/]+(/versions/[^/]+)?/infer|v1/models/[^/]+:(predict|explain))$")


def host_allowed(value: str | None, allowed: list[str]) -> bool:
    """True when the Host header ``value`` matches an entry: host (any port), host:port, ``*.suffix`` or ``*``."""
    if "*" in allowed:
        return True
    if not value:
        return False
    name, port = split_host(value.strip().lower())
    if not name or port == -1:
        return False
    for entry in allowed:
        want, want_port = split_host(entry)
        if want_port is not None and want_port != port:
            continue
        if name == want or (want.startswith("*.") and name.endswith(want[1:]) and len(name) > len(want) - 1):
            return True
    return False


class Guard:
    """The middleware; ``gate`` is the predictor's, so admission and turns count the same requests."""

    def __init__(self, app, cfg: ServeConfig, gate: Gate):
        self.app = app
        self.cfg = cfg
        self.gate = gate
        self.hosts = cfg.host_allow_list()

    async def __call__(self, scope, receive, send):
        """Check Host, body size and admission, then pass the request on with a receive that counts bytes."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        if not (method in ("GET", "HEAD") and PROBE_PATHS.match(path)) and not host_allowed(headers.get("host"),
                                                                                          self.hosts):
            return await self._reply(send, 400, f"Host {headers.get('host')!r} is not served here (allowed_hosts)",
                                     path)
        limit = self.cfg.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await self._reply(send, 413, f"the body is {declared} bytes; the limit is {limit}", path)
        seen, complete, deadline = 0, False, time.monotonic() + self.cfg.body_timeout_s

        async def bounded_receive():
            nonlocal seen, complete
            if complete:
                # After the body only a disconnect can come, whenever the client leaves: no deadline for that.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise BodyTimeout(f"the body did not arrive within {self.cfg.body_timeout_s:g} s") from None
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"the body is more than {limit} bytes (the limit)")
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        if not (method == "POST" and INFERENCE_PATHS.match(path)):
            return await self.app(scope, bounded_receive, send)
        if not self.gate.enter():
            await self._drain(bounded_receive)
            wait = self.gate.retry_after()
            return await self._reply(send, 503, f"{self.gate.capacity} requests are inside (max_waiting + 1); "
                                     f"retry in {wait} s", path, {"retry-after": str(wait)})
        try:
            await self.app(scope, bounded_receive, send)
        finally:
            self.gate.leave()

    @staticmethod
    async def _drain(receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
        except (BodyTooLarge, BodyTimeout):
            return

    @staticmethod
    async def _reply(send, status: int, message: str, path: str, headers: dict[str, str] | None = None) -> None:
        log.warning("%d %s: %s", status, path, message)
        body = orjson.dumps({"error": message})
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
