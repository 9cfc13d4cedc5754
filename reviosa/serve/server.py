"""Running the predictor in a real ``kserve.ModelServer``, on a chosen host (127.0.0.1 for local use)."""

from __future__ import annotations

import asyncio
import logging

from kserve import ModelServer
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer

from reviosa.serve.config import ServeConfig
from reviosa.serve.model import ReviosaPredictor

log = logging.getLogger(__name__)


class HostModelServer(ModelServer):
    """``ModelServer`` whose REST server binds ``host``: KServe 0.21 hard-codes 0.0.0.0, which a laptop or a
    test should not expose. One REST worker, no gRPC (this predictor speaks JSON)."""

    def __init__(self, host: str, **kwargs):
        kwargs.update(enable_grpc=False, workers=1)
        super().__init__(**kwargs)
        self.host = host

    def start(self, models) -> None:
        """Register the ready models and serve REST on ``host:http_port`` until a signal stops the server."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            access_log_format=self.access_log_format, workers=1, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
        # uvicorn reads the host from its config when it binds, so setting it here is enough.
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def serve(cfg: ServeConfig) -> None:
    """Load the model (readiness turns true once loaded) and serve it until SIGINT/SIGTERM."""
    predictor = ReviosaPredictor(cfg)
    predictor.load()
    log.info("serving %s on http://%s:%d (v1 :predict, v2 /infer)", cfg.model_name, cfg.host, cfg.http_port)
    HostModelServer(cfg.host, http_port=cfg.http_port).start([predictor])
