"""Running the predictor in a real ``kserve.ModelServer``, on a chosen host (127.0.0.1 for local use)."""

from __future__ import annotations

import asyncio
import logging

from kserve import ModelServer
from kserve.errors import InvalidInput
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer
from uvicorn.importer import import_from_string

from reviosa.config import ConfigError
from reviosa.serve.config import ServeConfig
from reviosa.serve.guard import Guard
from reviosa.serve.model import Gate, ReviosaPredictor
from reviosa.serve.protocol import install_error_handlers, register_routes
from reviosa.serve.urls import locate

log = logging.getLogger(__name__)


class GuardedRESTServer(RESTServer):
    """KServe's REST server with this package's inference routes first, its error shape, and the ``Guard``."""

    def __init__(self, *args, cfg: ServeConfig, gate: Gate, **kwargs):
        super().__init__(*args, **kwargs)
        self.cfg = cfg
        self.gate = gate

    def create_application(self):
        """KServe's application, with the routes, handlers and middleware of ``protocol`` and ``guard`` added."""
        app = import_from_string(FASTAPI_APP_IMPORT_STRING)
        register_routes(app, self.dataplane)
        super().create_application()
        install_error_handlers(app)
        # Added last, so it is the outermost user middleware: nothing reads a body before it has looked.
        app.add_middleware(Guard, cfg=self.cfg, gate=self.gate)


class HostModelServer(ModelServer):
    """``ModelServer`` whose REST server binds ``cfg.host``: KServe 0.21 hard-codes 0.0.0.0, which a laptop or a
    test should not expose. One REST worker, no gRPC (this predictor speaks JSON)."""

    def __init__(self, cfg: ServeConfig, **kwargs):
        kwargs.update(enable_grpc=False, workers=1, http_port=cfg.http_port)
        super().__init__(**kwargs)
        self.cfg = cfg
        self.host = cfg.host

    def start(self, models) -> None:
        """Register the ready models and serve REST on ``host:http_port`` until a signal stops the server."""
        self._register_and_check_atleast_one_model_is_ready(models)
        gates = [m.gate for m in models if isinstance(m, ReviosaPredictor)]
        self._rest_server = GuardedRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            access_log_format=self.access_log_format, workers=1, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            cfg=self.cfg, gate=gates[0] if gates else Gate(self.cfg.max_waiting))
        # uvicorn reads the host from its config when it binds, so setting it here is enough.
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def keep_memory_returnable() -> None:
    """Make glibc give freed request buffers back to the OS (no-op where libc is not glibc).

    By default glibc raises its mmap threshold after each large free and keeps freed memory in one arena per
    thread, so the buffers of parallel requests (bodies, decoded frames) stayed in the server's RSS and it crept
    up burst after burst. A fixed threshold maps every large buffer on its own, and two arenas bound what is kept.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold, m_arena_max = -3, -8
    mallopt(m_mmap_threshold, 256 * 1024)
    mallopt(m_arena_max, 2)


def serve(cfg: ServeConfig) -> None:
    """Check the allow-list, load the model (readiness turns true once loaded), serve until SIGINT/SIGTERM."""
    for prefix in cfg.allowed_url_prefixes:
        try:
            locate(prefix, "allowed_url_prefixes entry")
        except InvalidInput as err:
            raise ConfigError(str(err)) from None
    keep_memory_returnable()
    predictor = ReviosaPredictor(cfg)
    predictor.load()
    log.info("serving %s on http://%s:%d (v1 :predict, v2 /infer)", cfg.model_name, cfg.host, cfg.http_port)
    HostModelServer(cfg).start([predictor])
