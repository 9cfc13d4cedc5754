"""The KServe predictor: a registered ReVIOSa checkpoint answering Open Inference Protocol v2 and v1 requests.

A request is checked without decoding anything, then waits for its turn at the model (``Gate``: one runs, at most
``max_waiting`` wait, which the HTTP guard enforces before reading a body). A video URI is fetched while the request
waits, so a slow source never holds the model; frames are decoded only when the turn comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import asynccontextmanager

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid
from prometheus_client import Counter, Gauge

from reviosa.data.rle import encode_track
from reviosa.serve.config import ServeConfig
from reviosa.serve.inputs import (
    VideoRequest,
    VideoSource,
    check_expression,
    decode_source,
    parse_instance,
    video_source,
)
from reviosa.serve.urls import fetch_bytes

log = logging.getLogger(__name__)

V2_INPUTS = {"expression", "video_uri", "frames"}
# Open Inference Protocol model metadata; -1 is a dimension that varies with the request (frames).
INPUT_TYPES = [{"name": "expression", "datatype": "BYTES", "shape": [1]},
               {"name": "frames", "datatype": "BYTES", "shape": [-1]},
               {"name": "video_uri", "datatype": "BYTES", "shape": [1]}]
OUTPUT_TYPES = [{"name": "text", "datatype": "BYTES", "shape": [1]},
                {"name": "actor", "datatype": "BYTES", "shape": [-1]},
                {"name": "target", "datatype": "BYTES", "shape": [-1]},
                {"name": "has_target", "datatype": "BOOL", "shape": [1]},
                {"name": "frame_size", "datatype": "INT64", "shape": [2]}]
V2_OUTPUTS = [o["name"] for o in OUTPUT_TYPES]

INSIDE = Gauge("reviosa_serve_requests_inside", "inference requests admitted and not yet answered (running + waiting)")
REFUSED = Counter("reviosa_serve_requests_refused", "inference requests answered 503 because max_waiting were waiting")


class Gate:
    """Admission and turns: at most ``max_waiting + 1`` inference requests inside, one of them at the model."""

    def __init__(self, max_waiting: int):
        self.capacity = max_waiting + 1
        self.inside = 0
        self.service_s = 1.0
        self._lock: asyncio.Lock | None = None

    def enter(self) -> bool:
        """Admit one request, or False when ``capacity`` are inside."""
        if self.inside >= self.capacity:
            REFUSED.inc()
            return False
        self.inside += 1
        INSIDE.set(self.inside)
        return True

    def leave(self) -> None:
        """An admitted request has been answered."""
        self.inside -= 1
        INSIDE.set(self.inside)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the requests inside times the recent time at the model."""
        return max(1, min(300, math.ceil(self.service_s * self.inside)))

    @asynccontextmanager
    async def turn(self):
        """Hold the model (FIFO); the time held feeds ``retry_after``."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            t0 = time.monotonic()
            try:
                yield
            finally:
                self.service_s = 0.7 * self.service_s + 0.3 * (time.monotonic() - t0)


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
        self.gate = Gate(cfg.max_waiting)

    def load(self) -> bool:
        """Read the checkpoint; raises ``CheckpointError`` (and stays not ready) when it cannot."""
        from reviosa.model.modeling import ReviosaModel

        self.ready = False
        self.net = ReviosaModel.from_pretrained(self.cfg.model_uri, device=self.cfg.device)
        self.net.eval()
        self.ready = True
        log.info("model %s loaded from %s", self.name, self.cfg.model_uri)
        return self.ready

    def get_input_types(self) -> list[dict]:
        """Open Inference Protocol metadata of the v2 inputs (send ``frames`` or ``video_uri``, not both)."""
        return [dict(t) for t in INPUT_TYPES]

    def get_output_types(self) -> list[dict]:
        """Open Inference Protocol metadata of the v2 outputs (``actor``/``target``: JSON COCO RLE per frame)."""
        return [dict(t) for t in OUTPUT_TYPES]

    def infer(self, request: VideoRequest) -> dict:
        """Run the model on one checked request (blocking)."""
        from reviosa.model.inference import predict_video

        return result_dict(request, predict_video(self.net, request.frames, request.expression))

    async def _fetch(self, sources: list[VideoSource]) -> None:
        """Read the URI sources while the request waits, within the request's ``max_bytes`` left by its frames."""
        left = self.cfg.max_bytes - sum(s.encoded_bytes() for s in sources if s.frames is not None)
        for src in sources:
            if src.uri is not None:
                if left <= 0:
                    raise InvalidInput(f"the request's frames already hold the limit of {self.cfg.max_bytes} bytes")
                src.data = await fetch_bytes(src.uri, self.cfg, left)
                left -= len(src.data)

    async def _run(self, sources: list[VideoSource]) -> list[dict]:
        """Decode and infer each source at the model's turn, one decoded video in memory at a time."""
        budget = self.cfg.max_pixels
        results = []
        async with self.gate.turn():
            for src in sources:
                request = await asyncio.to_thread(decode_source, src, self.cfg, budget)
                src.data = None
                budget -= math.prod(request.frames.shape[:3])
                results.append(await asyncio.to_thread(self.infer, request))
                del request
        return results

    async def predict(self, payload, headers=None, response_headers=None):
        """v2 ``InferRequest`` → ``InferResponse``; v1 ``{"instances": [...]}`` → ``{"predictions": [...]}``."""
        if isinstance(payload, InferRequest):
            names = requested_outputs(payload)
            source = await asyncio.to_thread(self._parse_v2, payload)
            await self._fetch([source])
            return self._answer_v2(payload, (await self._run([source]))[0], names)
        if not isinstance(payload, dict):
            raise InvalidInput("the request body must be a JSON object")
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("v1 requests need `instances`: a non-empty list of "
                               "{expression, video_uri | frames} objects")
        if len(instances) > self.cfg.max_instances:
            raise InvalidInput(f"{len(instances)} instances sent; the limit is {self.cfg.max_instances}")
        sources = await asyncio.to_thread(self._parse_v1, instances)
        await self._fetch(sources)
        return {"predictions": await self._run(sources)}

    def _parse_v1(self, instances: list) -> list[VideoSource]:
        sources, pixels, size = [], self.cfg.max_pixels, self.cfg.max_bytes
        for instance in instances:
            src = parse_instance(instance, self.cfg, pixels, size)
            sources.append(src)
            if src.shape is not None:
                pixels -= math.prod(src.shape)
                size -= src.encoded_bytes()
        return sources

    def _parse_v2(self, payload: InferRequest) -> VideoSource:
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
        return video_source(uri, inputs.get("frames"), expression, self.cfg)

    def _answer_v2(self, payload: InferRequest, result: dict, names: list[str]) -> InferResponse:
        t = result["num_frames"]
        target = result["target"] or [None] * t
        make = {
            "text": lambda: InferOutput("text", [1], "BYTES", data=[result["text"]]),
            "actor": lambda: InferOutput("actor", [t], "BYTES", data=[json.dumps(r) for r in result["actor"]]),
            "target": lambda: InferOutput("target", [t], "BYTES", data=[json.dumps(r) for r in target]),
            "has_target": lambda: InferOutput("has_target", [1], "BOOL", data=[result["target"] is not None]),
            "frame_size": lambda: InferOutput("frame_size", [2], "INT64", data=[result["height"], result["width"]]),
        }
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=[make[n]() for n in names])


def requested_outputs(payload: InferRequest) -> list[str]:
    """The output names a v2 request asks for (all when it names none); 400 for an unknown or repeated one."""
    if not payload.request_outputs:
        return list(V2_OUTPUTS)
    names = [o.name for o in payload.request_outputs]
    for name in names:
        if name not in V2_OUTPUTS:
            raise InvalidInput(f"unknown output {name!r} requested (this model has {V2_OUTPUTS})")
    if len(set(names)) != len(names):
        raise InvalidInput(f"outputs {names} name one output twice")
    return names
