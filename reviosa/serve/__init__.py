"""KServe serving of ReVIOSa: ``config.ServeConfig``, ``model.ReviosaPredictor`` (v2 and v1 REST),
``inputs`` (request checks and limits), ``server.serve`` / ``server.HostModelServer`` (bind address)."""
