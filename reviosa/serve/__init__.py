"""KServe serving of ReVIOSa: ``config.ServeConfig``, ``model.ReviosaPredictor`` (v2 and v1 REST),
``inputs`` (request checks, decoding), ``urls`` (the video allow-list, bounded fetches), ``protocol`` (routes, v2
codec, error shape), ``guard`` (Host allow-list, body limit, admission), ``server.serve`` (bind address)."""
