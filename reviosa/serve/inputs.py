"""Turning a request's video (base64 frames or an allow-listed URI) into checked RGB frames.

Every refusal raises ``kserve.errors.InvalidInput`` (HTTP 400) with a message that says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import io
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
from kserve.errors import InvalidInput

from reviosa.model.tokenizer import control_tokens_in
from reviosa.serve.config import ServeConfig


@dataclass
class VideoRequest:
    """A checked request: uint8 (T, H, W, 3) frames and the expression."""

    frames: np.ndarray
    expression: str


def check_expression(expression, cfg: ServeConfig) -> str:
    """The stripped expression, or 400 when missing, not text, empty, too long or holding a reserved token."""
    if not isinstance(expression, str):
        raise InvalidInput(f"`expression` must be a string, got {type(expression).__name__}")
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


def decode_base64_frames(items, cfg: ServeConfig) -> np.ndarray:
    """Decode base64 JPEG/PNG frames after checking count, bytes and (from the header) resolution."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(items, list) or not items:
        raise InvalidInput("`frames` must be a non-empty list of base64-encoded JPEG/PNG images")
    if len(items) > cfg.max_frames:
        raise InvalidInput(f"{len(items)} frames sent; the limit is {cfg.max_frames}")
    total = sum(len(s) * 3 // 4 for s in items if isinstance(s, (str, bytes)))
    if total > cfg.max_bytes:
        raise InvalidInput(f"the frames hold about {total} bytes; the limit is {cfg.max_bytes}")
    frames = []
    for i, item in enumerate(items):
        if not isinstance(item, (str, bytes)):
            raise InvalidInput(f"frame {i} must be a base64 string, got {type(item).__name__}")
        try:
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"frame {i} is not valid base64") from None
        try:
            with Image.open(io.BytesIO(raw)) as img:
                # The header gives the size before any pixel is decoded (decompression bombs stop here).
                _check_size(img.height, img.width, cfg, f"frame {i}")
                frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError):
            raise InvalidInput(f"frame {i} is not a JPEG/PNG image") from None
        if frames[-1].shape != frames[0].shape:
            raise InvalidInput(f"frame {i} is {frames[-1].shape[1]}x{frames[-1].shape[0]}, frame 0 is "
                               f"{frames[0].shape[1]}x{frames[0].shape[0]}: all frames must have one size")
    return np.stack(frames)


def check_uri(uri, cfg: ServeConfig) -> str:
    """The URI when it starts with an allow-listed prefix (at a ``/`` boundary), else 400."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInput("`video_uri` must be a non-empty string")
    if not uri.startswith(("s3://", "http://", "https://")):
        raise InvalidInput(f"`video_uri` {uri!r}: only s3://, http:// and https:// URIs are accepted")
    if ".." in uri.split("?", 1)[0].split("/"):
        raise InvalidInput(f"`video_uri` {uri!r}: '..' path segments are not accepted")
    for prefix in cfg.allowed_url_prefixes:
        # ``https://host`` must not admit ``https://host.evil.example``.
        if uri == prefix or (uri.startswith(prefix) and (prefix.endswith("/") or uri[len(prefix)] in "/?")):
            return uri
    raise InvalidInput(f"`video_uri` {uri!r} is not in the allow-list of this server "
                       f"({', '.join(cfg.allowed_url_prefixes) or 'empty: send frames instead'})")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could leave the allow-list, so none is followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise InvalidInput(f"`video_uri` answered with a redirect to {newurl!r}; redirects are not followed")


def fetch_bytes(uri: str, cfg: ServeConfig) -> bytes:
    """Read an allow-listed URI (``s3://`` through the storage config), refusing more than ``max_bytes``."""
    uri = check_uri(uri, cfg)
    limit = cfg.max_bytes
    if uri.startswith("s3://"):
        from reviosa.storage.errors import ObjectTooLargeError
        from reviosa.storage.fetch import read_bytes

        try:
            data = read_bytes(uri, limit)
        except ObjectTooLargeError as err:
            raise InvalidInput(f"`video_uri` {err}") from None
        except FileNotFoundError:
            raise InvalidInput(f"`video_uri` {uri!r}: no such object") from None
    else:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(uri, timeout=cfg.fetch_timeout_s) as resp:
                data = resp.read(limit + 1)
        except urllib.error.HTTPError as err:
            raise InvalidInput(f"`video_uri` {uri!r}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            raise InvalidInput(f"`video_uri` {uri!r}: cannot be read ({err})") from None
    if len(data) > limit:
        raise InvalidInput(f"`video_uri` {uri!r} is larger than the limit of {limit} bytes")
    return data


def decode_video_bytes(data: bytes, cfg: ServeConfig, what: str = "the video") -> np.ndarray:
    """Decode a video file's bytes to (T, H, W, 3), checking resolution first and the frame count while decoding."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InvalidInput(f"{what} has no video stream")
            stream = container.streams.video[0]
            _check_size(stream.codec_context.height, stream.codec_context.width, cfg, what)
            frames = []
            for frame in container.decode(stream):
                if len(frames) == cfg.max_frames:
                    raise InvalidInput(f"{what} has more than {cfg.max_frames} frames (the limit)")
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as err:
        raise InvalidInput(f"{what} cannot be decoded as a video ({err})") from None
    if not frames:
        raise InvalidInput(f"{what} has no frames")
    return np.stack(frames)


def parse_instance(instance, cfg: ServeConfig) -> VideoRequest:
    """A v1 instance ``{"expression", "video_uri" | "frames"}`` as a checked request."""
    if not isinstance(instance, dict):
        raise InvalidInput("each instance must be an object with `expression` and `video_uri` or `frames`")
    unknown = sorted(set(instance) - {"expression", "video_uri", "frames"})
    if unknown:
        raise InvalidInput(f"unknown instance fields {unknown} (expected expression, video_uri or frames)")
    expression = check_expression(instance.get("expression"), cfg)
    return VideoRequest(frames=load_video(instance.get("video_uri"), instance.get("frames"), cfg),
                        expression=expression)


def load_video(uri, frames, cfg: ServeConfig) -> np.ndarray:
    """Frames from exactly one of a URI or base64 frames."""
    if (uri is None) == (frames is None):
        raise InvalidInput("send exactly one of `video_uri` and `frames`")
    if frames is not None:
        return decode_base64_frames(frames, cfg)
    return decode_video_bytes(fetch_bytes(uri, cfg), cfg, f"`video_uri` {uri!r}")
