"""Turning a request's video (base64 frames or an allow-listed URI) into checked RGB frames, in two steps.

``parse_*`` / ``check_frames`` check a request without decoding a pixel (image headers give the sizes), so a bad
request is refused before it waits; ``decode_source`` decodes when the request's turn comes, into one array, within
the request's pixel budget. Every refusal raises ``kserve.errors.InvalidInput`` (HTTP 400) with a message that
says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass

import numpy as np
from kserve.errors import InvalidInput

from reviosa.model.tokenizer import control_tokens_in
from reviosa.serve.config import ServeConfig
from reviosa.serve.urls import check_uri

IMAGE_FORMATS = ("PNG", "JPEG", "MPO")  # MPO: the JPEG flavour many cameras write
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


@dataclass
class VideoRequest:
    """A checked request: uint8 (T, H, W, 3) frames and the expression."""

    frames: np.ndarray
    expression: str


@dataclass
class VideoSource:
    """A checked request before decoding: encoded ``frames`` (base64 or raw JPEG/PNG bytes) or a ``uri``.

    ``shape`` is (T, H, W) from the frame headers; ``data`` holds the fetched video while the request waits.
    """

    expression: str
    frames: list | None = None
    uri: str | None = None
    shape: tuple[int, int, int] | None = None
    data: bytes | None = None

    def encoded_bytes(self) -> int:
        """Bytes of encoded video this request holds (frames as sent, or the fetched file)."""
        if self.frames is not None:
            return sum(len(f) for f in self.frames)
        return len(self.data or b"")


def check_expression(expression, cfg: ServeConfig) -> str:
    """The stripped expression, or 400 when missing, not text, empty, too long or holding a reserved token."""
    if isinstance(expression, bytes):
        try:
            expression = expression.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("`expression` is not UTF-8 text") from None
    if not isinstance(expression, str):
        raise InvalidInput(f"`expression` must be a string, got {type(expression).__name__}")
    try:
        # A lone surrogate (JSON "\ud800") is a str but no text; the tokenizer would fail on it with a TypeError.
        expression.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("`expression` is not valid Unicode text (it holds a lone surrogate)") from None
    expression = expression.strip()
    if not expression:
        raise InvalidInput("`expression` is empty")
    if len(expression) > cfg.max_expression_chars:
        raise InvalidInput(f"`expression` has {len(expression)} characters; the limit is {cfg.max_expression_chars}")
    reserved = control_tokens_in(expression)
    if reserved:
        raise InvalidInput(f"`expression` contains reserved token(s) {reserved}")
    return expression


def _check_size(h: int, w: int, cfg: ServeConfig, what: str) -> None:
    if h > cfg.max_height or w > cfg.max_width:
        raise InvalidInput(f"{what} is {w}x{h} pixels; the limit is {cfg.max_width}x{cfg.max_height}")


def _frame_bytes(item, i: int) -> bytes:
    """Raw image bytes of frame ``i``: base64 text, or the image itself as a binary v2 tensor may carry it."""
    if isinstance(item, bytes) and item.startswith(IMAGE_MAGIC):
        return item
    if not isinstance(item, (str, bytes)):
        raise InvalidInput(f"frame {i} must be a base64 string, got {type(item).__name__}")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"frame {i} is not valid base64") from None


def _open_image(raw: bytes, i: int):
    """The PIL image of frame ``i``, headers read, no pixel decoded yet."""
    from PIL import Image

    try:
        return Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise InvalidInput(f"frame {i} declares more than {Image.MAX_IMAGE_PIXELS * 2} pixels") from None
    except Exception:
        # PIL reports a corrupt header with many exception types (OSError, SyntaxError, struct.error, ...).
        raise InvalidInput(f"frame {i} is not a JPEG/PNG image") from None


def check_frames(items, cfg: ServeConfig, budget: int | None = None, byte_budget: int | None = None
                 ) -> tuple[int, int, int]:
    """(T, H, W) of base64 JPEG/PNG frames from their headers: count, bytes, resolution, one size, pixel budget."""
    budget = cfg.max_pixels if budget is None else budget
    byte_budget = cfg.max_bytes if byte_budget is None else byte_budget
    if not isinstance(items, list) or not items:
        raise InvalidInput("`frames` must be a non-empty list of base64-encoded JPEG/PNG images")
    if len(items) > cfg.max_frames:
        raise InvalidInput(f"{len(items)} frames sent; the limit is {cfg.max_frames}")
    total = sum(len(s) * 3 // 4 if isinstance(s, str) else len(s) for s in items if isinstance(s, (str, bytes)))
    if total > byte_budget:
        raise InvalidInput(f"the frames hold about {total} bytes; the limit is {byte_budget}")
    size = None
    for i, item in enumerate(items):
        with _open_image(_frame_bytes(item, i), i) as img:
            # The header gives the size before any pixel is decoded (decompression bombs stop here).
            _check_size(img.height, img.width, cfg, f"frame {i}")
            if size is None:
                size = img.size
            elif img.size != size:
                raise InvalidInput(f"frame {i} is {img.width}x{img.height}, frame 0 is {size[0]}x{size[1]}: "
                                   "all frames must have one size")
    t, h, w = len(items), size[1], size[0]
    if t * h * w > budget:
        raise InvalidInput(f"{t} frames of {w}x{h} are {t * h * w} pixels; the limit is {budget} per request "
                           f"({cfg.max_pixels} in all)")
    return t, h, w


def decode_frames(items, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode frames already checked by ``check_frames`` into one uint8 (T, H, W, 3) array."""
    out = np.empty((*shape, 3), dtype=np.uint8)
    for i, item in enumerate(items):
        with _open_image(_frame_bytes(item, i), i) as img:
            try:
                out[i] = np.asarray(img.convert("RGB"), dtype=np.uint8)
            except Exception:
                # Truncated or corrupt pixel data shows only now, with any of PIL's exception types.
                raise InvalidInput(f"frame {i} is not a JPEG/PNG image (its pixel data cannot be decoded)") from None
    return out


def decode_base64_frames(items, cfg: ServeConfig) -> np.ndarray:
    """Check (``check_frames``) and decode base64 JPEG/PNG frames."""
    return decode_frames(items, check_frames(items, cfg))


def decode_video_bytes(data: bytes, cfg: ServeConfig, what: str = "the video", budget: int | None = None
                       ) -> np.ndarray:
    """Decode a video file's bytes to (T, H, W, 3), checking resolution first, frames and pixels while decoding."""
    import av

    budget = cfg.max_pixels if budget is None else budget
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InvalidInput(f"{what} has no video stream")
            stream = container.streams.video[0]
            h, w = stream.codec_context.height, stream.codec_context.width
            _check_size(h, w, cfg, what)
            if h < 1 or w < 1:
                raise InvalidInput(f"{what} declares no frame size")
            cap = min(cfg.max_frames, budget // (h * w))
            # Pages of the unused tail are never touched, so they cost address space, not memory.
            out = np.empty((max(cap, 1), h, w, 3), dtype=np.uint8)
            n = 0
            for frame in container.decode(stream):
                if n == cfg.max_frames:
                    raise InvalidInput(f"{what} has more than {cfg.max_frames} frames (the limit)")
                if n == cap:
                    raise InvalidInput(f"{what} has more than {cap} frames of {w}x{h}, over the limit of "
                                       f"{budget} pixels per request ({cfg.max_pixels} in all)")
                if (frame.height, frame.width) != (h, w):
                    raise InvalidInput(f"{what} changes its frame size to {frame.width}x{frame.height}")
                out[n] = frame.to_ndarray(format="rgb24")
                n += 1
    except av.error.FFmpegError as err:
        raise InvalidInput(f"{what} cannot be decoded as a video ({err})") from None
    except (ValueError, TypeError, EOFError, MemoryError, OSError) as err:
        if isinstance(err, InvalidInput):
            raise
        raise InvalidInput(f"{what} cannot be decoded as a video ({type(err).__name__})") from None
    if not n:
        raise InvalidInput(f"{what} has no frames")
    return out[:n]


def parse_instance(instance, cfg: ServeConfig, budget: int | None = None, byte_budget: int | None = None
                   ) -> VideoSource:
    """A v1 instance ``{"expression", "video_uri" | "frames"}`` as a checked, not yet decoded request."""
    if not isinstance(instance, dict):
        raise InvalidInput("each instance must be an object with `expression` and `video_uri` or `frames`")
    unknown = sorted(set(instance) - {"expression", "video_uri", "frames"})
    if unknown:
        raise InvalidInput(f"unknown instance fields {unknown} (expected expression, video_uri or frames)")
    expression = check_expression(instance.get("expression"), cfg)
    return video_source(instance.get("video_uri"), instance.get("frames"), expression, cfg, budget, byte_budget)


def video_source(uri, frames, expression: str, cfg: ServeConfig, budget: int | None = None,
                 byte_budget: int | None = None) -> VideoSource:
    """Exactly one of a URI (allow-listed) or frames (headers checked), as a ``VideoSource``."""
    if (uri is None) == (frames is None):
        raise InvalidInput("send exactly one of `video_uri` and `frames`")
    if frames is not None:
        return VideoSource(expression, frames=frames, shape=check_frames(frames, cfg, budget, byte_budget))
    if isinstance(uri, bytes):
        try:
            uri = uri.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("`video_uri` is not UTF-8 text") from None
    return VideoSource(expression, uri=check_uri(uri, cfg))


def decode_source(src: VideoSource, cfg: ServeConfig, budget: int) -> VideoRequest:
    """Decode a source's frames (its turn has come) within ``budget`` pixels."""
    if src.frames is not None:
        if math.prod(src.shape) > budget:
            raise InvalidInput(f"the request's videos hold more than the limit of {cfg.max_pixels} pixels")
        frames = decode_frames(src.frames, src.shape)
    else:
        frames = decode_video_bytes(src.data, cfg, f"`video_uri` {src.uri!r}", budget)
    return VideoRequest(frames=frames, expression=src.expression)
