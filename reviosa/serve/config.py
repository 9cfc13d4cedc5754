"""Serving settings: which model, where it may read videos from, and the request limits (``configs/default.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from reviosa.config import Config


def cluster_hosts(name: str, namespace: str) -> tuple[str, ...]:
    """The names of an InferenceService's predictor Service as in-cluster Host headers carry them."""
    service = f"{name}-predictor"
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


# The shipped InferenceService is reviosa in namespace reviosa.
CLUSTER_HOSTS = cluster_hosts("reviosa", "reviosa")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ServeConfig(Config):
    """One object for the predictor and its server."""

    shipped_dir = Path(__file__).with_name("configs")

    model_uri: str = Field("/mnt/models", description="checkpoint folder or s3:// URI; KServe's storage initializer "
                           "puts STORAGE_URI's files in /mnt/models")
    model_name: str = Field("reviosa", min_length=1, description="the model's name in the URLs")
    device: str = "cpu"
    http_port: int = Field(8080, ge=1, le=65535)
    host: str = Field("0.0.0.0", description="bind address: in-cluster default; `reviosa serve` binds 127.0.0.1")
    max_frames: int = Field(64, ge=1)
    max_bytes: int = Field(32 * 1024 * 1024, ge=1, description="encoded frames or fetched video bytes of a request, "
                           "summed over its frames and instances")
    max_pixels: int = Field(32 * 1920 * 1080, ge=1, description="decoded pixels of a request (frames x height x "
                            "width, summed over instances); 3 bytes each as RGB, decoded only when the request runs")
    max_body_bytes: int = Field(48 * 1024 * 1024, ge=1024, description="HTTP request body; refused with 413 from "
                                "Content-Length or as soon as more streams in")
    max_waiting: int = Field(4, ge=0, description="requests that may wait (fetching, queued) while one runs; "
                             "more are answered 503 with Retry-After before their body is read")
    body_timeout_s: float = Field(30.0, gt=0, description="time an admitted request has to send its whole body "
                                  "(408 after), so slow senders cannot hold the queue")
    max_height: int = Field(1080, ge=1)
    max_width: int = Field(1920, ge=1)
    max_expression_chars: int = Field(512, ge=1)
    max_instances: int = Field(4, ge=1, description="v1 instances per request")
    allowed_url_prefixes: list[str] = Field([], description="URL prefixes a request may name as its video (s3://, "
                                            "http(s):// only); empty = URIs refused")
    fetch_timeout_s: float = Field(30.0, gt=0, description="total time for one video fetch, redirects included")
    allowed_hosts: list[str] = Field(list(CLUSTER_HOSTS), description="Host header values served: host (any port) "
                                     "or host:port, *.suffix, or * for any; 127.0.0.1, localhost and [::1] with "
                                     "http_port are always served. Probe paths (health, ready, metrics) are exempt")

    @field_validator("allowed_url_prefixes")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not prefix.startswith(("s3://", "http://", "https://")):
                raise ValueError(f"{prefix!r} must start with s3://, http:// or https://")
            if prefix.rstrip("/").count("/") < 2 or prefix.endswith("://"):
                raise ValueError(f"{prefix!r} must name at least a host or bucket")
        return prefixes

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        out = []
        for entry in hosts:
            host = entry.strip().lower()
            name, port = split_host(host)
            bad_char = any(c in name for c in "/@ ") or (":" in name and not name.startswith("["))
            if not name or port == -1 or bad_char or ("*" in name and host != "*" and not name.startswith("*.")):
                raise ValueError(f"{entry!r} must be host, host:port, *.suffix or *")
            out.append(host)
        return out

    def host_allow_list(self) -> list[str]:
        """The Host header values served: ``allowed_hosts`` plus the loopback names with ``http_port``."""
        return list(self.allowed_hosts) + [f"{h}:{self.http_port}" for h in LOOPBACK_HOSTS]


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) → (host, port or None); port -1 when it is not a number."""
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[:end + 1], value[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            return "", -1
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    if port is None:
        return host, None
    return (host, int(port)) if port.isdigit() and 0 < int(port) < 65536 else (host, -1)
