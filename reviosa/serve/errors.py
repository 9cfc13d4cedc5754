"""HTTP answers the predictor gives besides KServe's own: each carries its status, a message and extra headers.

A client mistake stays ``kserve.errors.InvalidInput`` (400). These are the rest: an upstream video source that
fails (502) or is too slow (504), a body that is too large (413), a full queue (503 + ``Retry-After``) and a Host
header this server does not serve (400). Messages never name internal endpoints.
"""

from __future__ import annotations


class ServeError(Exception):
    """An answer with ``status`` and ``headers``; ``str()`` is the message for ``{"error": ...}``."""

    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = dict(headers or {})


class UpstreamError(ServeError):
    """The video source named in the request failed or cannot be reached."""

    status = 502


class UpstreamTimeout(ServeError):
    """The video source did not deliver within ``fetch_timeout_s``."""

    status = 504


class BodyTooLarge(ServeError):
    """The request body is larger than ``max_body_bytes``."""

    status = 413


class BodyTimeout(ServeError):
    """An admitted request did not send its whole body within ``body_timeout_s``."""

    status = 408


class Busy(ServeError):
    """``max_waiting`` requests already wait; ``Retry-After`` says when to come back."""

    status = 503


class HostRefused(ServeError):
    """The Host header is not in the allow-list (DNS rebinding, wrong routing)."""

    status = 400
