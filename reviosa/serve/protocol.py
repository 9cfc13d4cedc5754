"""The HTTP side of the predictor: v1/v2 inference routes, the v2 codec and the protocol's error shape everywhere.

KServe 0.21's own routes parse a v2 body with FastAPI (a malformed one is a 422 ``{"detail": [...]}``), keep the
whole body while the request waits, answer ``model_version``/``parameters``/``versions`` as null and log a
traceback for every 400. These routes are registered before KServe's, so they answer those paths: a body is read
as it streams (``guard`` bounds it), parsed once and dropped; v2 requests may use the binary tensor extension
(``inference-header-content-length``) both ways and name the ``outputs`` they want; absent optional fields are
omitted; every error is ``{"error": message}`` and a client error logs one line.
"""

from __future__ import annotations

import asyncio
import logging
import struct

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput
from kserve.utils.numpy_codec import to_np_dtype
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from reviosa.serve.errors import ServeError

log = logging.getLogger(__name__)

JSON_LENGTH_HEADER = "inference-header-content-length"
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
             "BYTES")
_INFER_DOC = "Open Inference Protocol v2 inference (JSON or the binary tensor extension); `outputs` selects outputs."


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with ``status``, the protocol's error shape."""
    return Response(orjson.dumps({"error": message}), status, headers=headers, media_type="application/json")


async def read_body(request: Request) -> bytearray:
    """The body as it streams in (the guard stops it at ``max_body_bytes``), without Starlette's cached copy."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return body


def _parameters(value, what: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(f"{what} must be an object of named parameters")
    for key, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise InvalidInput(f"{what}[{key!r}] must be a string, number or boolean")
    return value


def _shape(value, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2 ** 31
                                              for d in value):
        raise InvalidInput(f"{what} `shape` must be a list of non-negative integers")
    return value


def _binary(raw: bytes, datatype: str, what: str) -> list:
    """Elements of a binary tensor: length-prefixed strings for BYTES, little-endian numbers otherwise."""
    if datatype == "BYTES":
        items, offset = [], 0
        try:
            while offset < len(raw):
                (n,) = struct.unpack_from("<I", raw, offset)
                if offset + 4 + n > len(raw):
                    raise struct.error
                items.append(bytes(raw[offset + 4:offset + 4 + n]))
                offset += 4 + n
        except struct.error:
            raise InvalidInput(f"{what}: the binary BYTES data is not a sequence of length-prefixed elements") from None
        return items
    dtype = np.dtype(to_np_dtype(datatype)).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidInput(f"{what}: {len(raw)} binary bytes are no whole number of {datatype} elements")
    return np.frombuffer(raw, dtype=dtype).tolist()


def decode_v2(body: bytes | bytearray, headers, model_name: str) -> InferRequest:
    """A v2 request body (JSON, or JSON + binary tensors) as a checked ``InferRequest``; 400 naming the fault."""
    raw = b""
    length = headers.get(JSON_LENGTH_HEADER)
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            raise InvalidInput(f"`{JSON_LENGTH_HEADER}: {length}` must be the byte length of the JSON part of the "
                               f"{len(body)}-byte body")
        body, raw = body[:int(length)], memoryview(body)[int(length):]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"the request body is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("a v2 request body must be a JSON object with `inputs`")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("`id` must be a string")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("`inputs` must be a non-empty list of {name, shape, datatype, data} objects")
    infer_inputs, names, offset = [], set(), 0
    for i, item in enumerate(inputs):
        what = f"input {i}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{what} must be an object with name, shape, datatype and data")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{what} needs a `name` string")
        what = f"input {name!r}"
        if name in names:
            raise InvalidInput(f"{what} is sent twice")
        names.add(name)
        if datatype not in DATATYPES:
            raise InvalidInput(f"{what} `datatype` must be one of {', '.join(DATATYPES)}")
        shape = _shape(item.get("shape"), what)
        params = _parameters(item.get("parameters"), f"{what} `parameters`")
        size = (params or {}).get("binary_data_size")
        if size is not None:
            if "data" in item or not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"{what}: `binary_data_size` must be a byte count, and then `data` is absent")
            if offset + size > len(raw):
                raise InvalidInput(f"{what}: `binary_data_size` {size} runs past the binary data after the JSON")
            data = _binary(raw[offset:offset + size], datatype, what)
            offset += size
            params = {k: v for k, v in params.items() if k != "binary_data_size"}
        elif isinstance(item.get("data"), list):
            data = item["data"]
        else:
            raise InvalidInput(f"{what} needs `data` (a list) or a `binary_data_size` parameter")
        infer_inputs.append(InferInput(name, shape, datatype, data=data, parameters=params or None))
    if offset != len(raw):
        raise InvalidInput(f"{len(raw) - offset} bytes after the JSON belong to no input's `binary_data_size`")
    outputs = doc.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list):
            raise InvalidInput("`outputs` must be a list of {name, parameters} objects")
        requested = []
        for out in outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidInput("each of `outputs` must be an object with a `name` string")
            params = _parameters(out.get("parameters"), f"output {out['name']!r} `parameters`")
            if params and not isinstance(params.get("binary_data", False), bool):
                raise InvalidInput(f"output {out['name']!r}: `binary_data` must be true or false")
            requested.append(RequestedOutput(out["name"], params))
    params = _parameters(doc.get("parameters"), "`parameters`")
    if params and not isinstance(params.get("binary_data_output", False), bool):
        raise InvalidInput("`binary_data_output` must be true or false")
    return InferRequest(model_name, infer_inputs, request_id=request_id, parameters=params,
                        request_outputs=requested or None)


def _serialize(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        items = [d if isinstance(d, bytes) else str(d).encode() for d in data]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return np.asarray(data, dtype=np.dtype(to_np_dtype(datatype)).newbyteorder("<")).tobytes()


def encode_v2(response: InferResponse, request: InferRequest) -> Response:
    """The v2 answer: JSON, or JSON + binary outputs where the request asks (``binary_data`` / ``binary_data_output``).

    Outputs come in the order the request names them; ``model_version`` and ``parameters`` only when set.
    """
    default_binary = bool((request.parameters or {}).get("binary_data_output", False))
    wanted = {o.name: o for o in request.request_outputs or []}
    outputs, raws = [], []
    for out in response.outputs:
        params = wanted[out.name].parameters if out.name in wanted else None
        binary = bool((params or {}).get("binary_data", default_binary))
        item = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if binary:
            raws.append(_serialize(out.datatype, list(out.data)))
            item["parameters"] = {"binary_data_size": len(raws[-1])}
        else:
            item["data"] = out.data.tolist() if isinstance(out.data, np.ndarray) else list(out.data)
        outputs.append(item)
    doc = {"model_name": response.model_name, "id": response.id, "outputs": outputs}
    if response.model_version:
        doc["model_version"] = response.model_version
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raws:
        return Response(body, media_type="application/json")
    return Response(body + b"".join(raws), media_type="application/octet-stream",
                    headers={JSON_LENGTH_HEADER: str(len(body))})


def register_routes(app: FastAPI, dataplane: DataPlane) -> None:
    """Add the inference and metadata routes; call before KServe registers its own for the same paths."""
    router = APIRouter()

    async def ready_model(model_name: str):
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)

    async def infer_v2(model_name: str, request: Request) -> Response:
        await ready_model(model_name)
        body = await read_body(request)
        payload = await asyncio.to_thread(decode_v2, body, request.headers, model_name)
        del body
        response, _ = await dataplane.infer(model_name, payload, dict(request.headers))
        return await asyncio.to_thread(encode_v2, response, payload)

    async def versioned(model_name: str, model_version: str) -> Response:
        # KServe 0.21 answers 501 for these; a version that does not exist is the client's to fix.
        return error_response(404, f"model {model_name!r} has no versions here; use /v2/models/{model_name}")

    async def explain_v1(model_name: str) -> Response:
        return error_response(404, f"model {model_name!r} has no explainer; POST /v1/models/{model_name}:predict")

    async def predict_v1(model_name: str, request: Request) -> Response:
        await ready_model(model_name)
        body = await read_body(request)
        try:
            payload = await asyncio.to_thread(orjson.loads, body)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(f"the request body is not valid JSON: {err}") from None
        del body
        response, _ = await dataplane.infer(model_name, payload, dict(request.headers))
        body = await asyncio.to_thread(orjson.dumps, response, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(body, media_type="application/json")

    async def metadata_v2(model_name: str) -> Response:
        doc = await dataplane.model_metadata(model_name)
        doc["platform"] = doc.get("platform") or "pytorch"
        return Response(orjson.dumps({k: v for k, v in doc.items() if v is not None}), media_type="application/json")

    router.add_api_route("/v2/models/{model_name}/infer", infer_v2, methods=["POST"], description=_INFER_DOC)
    for path, methods in (("/infer", ["POST"]), ("", ["GET"]), ("/ready", ["GET"])):
        router.add_api_route("/v2/models/{model_name}/versions/{model_version}" + path, versioned, methods=methods,
                             include_in_schema=False)
    router.add_api_route("/v1/models/{model_name}:predict", predict_v1, methods=["POST"])
    router.add_api_route("/v1/models/{model_name}:explain", explain_v1, methods=["POST"], include_in_schema=False)
    router.add_api_route("/v2/models/{model_name}", metadata_v2, methods=["GET"])
    app.include_router(router)


def _one_line(request: Request, status: int, message: str) -> None:
    log.warning("%d %s %s: %s", status, request.method, request.url.path, message.splitlines()[0][:300])


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": ...}``; client errors log one line, only unexpected ones a traceback."""

    async def client_error(request: Request, exc: Exception) -> Response:
        status, headers = 400, None
        if isinstance(exc, ServeError):
            status, headers = exc.status, exc.headers
        elif isinstance(exc, ModelNotFound):
            status = 404
        elif isinstance(exc, ModelNotReady):
            status = 503
        elif isinstance(exc, NotImplementedError):
            status = 501
        message = str(exc) or type(exc).__name__
        _one_line(request, status, message)
        return error_response(status, message, headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                             for e in exc.errors()[:5])
        message = f"the request does not match the protocol: {problems}"
        _one_line(request, 400, message)
        return error_response(400, message)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        _one_line(request, exc.status_code, str(exc.detail))
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        _one_line(request, 400, "the client disconnected before sending the whole body")
        return error_response(400, "the client disconnected before sending the whole body")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("500 %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")

    for kind in (InvalidInput, ServeError, ModelNotFound, ModelNotReady, NotImplementedError):
        app.add_exception_handler(kind, client_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, unexpected)
