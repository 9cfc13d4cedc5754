"""The KServe predictor: a registered ReVIOSa checkpoint answering Open Inference Protocol v2 and v1 requests."""

from __future__ import annotations

import asyncio
import json
import logging

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

from reviosa.data.rle import encode_track
from reviosa.serve.config import ServeConfig
from reviosa.serve.inputs import VideoRequest, check_expression, load_video, parse_instance

log = logging.getLogger(__name__)

V2_INPUTS = {"expression", "video_uri", "frames"}


def result_dict(request: VideoRequest, prediction) -> dict:
    """JSON-ready answer: generated text and per-frame COCO RLE (``None`` = object absent) per role."""
    t, h, w = prediction.actor.shape
    return {"text": prediction.text, "num_frames": t, "height": h, "width": w,
            "actor": encode_track(prediction.actor),
            "target": None if prediction.target is None else encode_track(prediction.target)}


class ReviosaPredictor(kserve.Model):
    """Loads a ``save_pretrained`` checkpoint (folder or ``s3://``); ``ready`` is true only once it is loaded."""

    def __init__(self, cfg: ServeConfig):
        super().__init__(cfg.model_name)
        self.cfg = cfg
        self.net = None
        self.ready = False
        # One inference at a time: requests queue instead of multiplying peak memory; health checks stay live.
        self._lock: asyncio.Lock | None = None

    def load(self) -> bool:
        """Read the checkpoint; raises ``CheckpointError`` (and stays not ready) when it cannot."""
        from reviosa.model.modeling import ReviosaModel

        self.ready = False
        self.net = ReviosaModel.from_pretrained(self.cfg.model_uri, device=self.cfg.device)
        self.net.eval()
        self.ready = True
        log.info("model %s loaded from %s", self.name, self.cfg.model_uri)
        return self.ready

    def infer(self, request: VideoRequest) -> dict:
        """Run the model on one checked request (blocking)."""
        from reviosa.model.inference import predict_video

        return result_dict(request, predict_video(self.net, request.frames, request.expression))

    async def _run(self, request: VideoRequest) -> dict:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await asyncio.to_thread(self.infer, request)

    async def predict(self, payload, headers=None, response_headers=None):
        """v2 ``InferRequest`` → ``InferResponse``; v1 ``{"instances": [...]}`` → ``{"predictions": [...]}``."""
        if isinstance(payload, InferRequest):
            request = await asyncio.to_thread(self._parse_v2, payload)
            return self._answer_v2(payload, await self._run(request))
        if not isinstance(payload, dict):
            raise InvalidInput("the request body must be a JSON object")
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("v1 requests need `instances`: a non-empty list of "
                               "{expression, video_uri | frames} objects")
        if len(instances) > self.cfg.max_instances:
            raise InvalidInput(f"{len(instances)} instances sent; the limit is {self.cfg.max_instances}")
        requests = [await asyncio.to_thread(parse_instance, i, self.cfg) for i in instances]
        return {"predictions": [await self._run(r) for r in requests]}

    def _parse_v2(self, payload: InferRequest) -> VideoRequest:
        inputs = {}
        for inp in payload.inputs:
            if inp.name not in V2_INPUTS:
                raise InvalidInput(f"unknown input {inp.name!r} (expected {sorted(V2_INPUTS)})")
            if inp.datatype != "BYTES":
                raise InvalidInput(f"input {inp.name!r} must have datatype BYTES, got {inp.datatype}")
            data = inp.data.tolist() if hasattr(inp.data, "tolist") else list(inp.data or [])
            if payload.from_grpc:
                data = [d.decode() if isinstance(d, bytes) else d for d in data]
            shape = list(inp.shape)
            if len(shape) != 1 or shape[0] != len(data):
                raise InvalidInput(f"input {inp.name!r} must be 1-D with shape [{len(data)}] for its "
                                   f"{len(data)} elements, got shape {shape}")
            if inp.name != "frames" and len(data) != 1:
                raise InvalidInput(f"input {inp.name!r} must have shape [1], got {shape}")
            inputs[inp.name] = data
        if "expression" not in inputs:
            raise InvalidInput("input `expression` (BYTES, shape [1]) is missing")
        expression = check_expression(inputs["expression"][0], self.cfg)
        uri = inputs["video_uri"][0] if "video_uri" in inputs else None
        return VideoRequest(frames=load_video(uri, inputs.get("frames"), self.cfg), expression=expression)

    def _answer_v2(self, payload: InferRequest, result: dict) -> InferResponse:
        t = result["num_frames"]
        target = result["target"] or [None] * t
        outputs = [
            InferOutput("text", [1], "BYTES", data=[result["text"]]),
            InferOutput("actor", [t], "BYTES", data=[json.dumps(r) for r in result["actor"]]),
            InferOutput("target", [t], "BYTES", data=[json.dumps(r) for r in target]),
            InferOutput("has_target", [1], "BOOL", data=[result["target"] is not None]),
            InferOutput("frame_size", [2], "INT64", data=[result["height"], result["width"]]),
        ]
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=outputs)
