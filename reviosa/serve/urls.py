"""Which video URLs a request may name, and reading one within a byte limit and a total deadline.

A URL is compared with the allow-list as the server it names would read it: scheme, host and port exactly (default
ports filled in), the path percent-decoded once. Everything that would let a server decode or normalise a path
into another one is refused outright rather than normalised here: encoded dots, slashes, backslashes and percent
signs (``%2e``, ``%2f``, ``%5c``, ``%25``, so no double decoding), dot segments (also ``..;x``), backslashes,
userinfo (``allowed@evil``), fragments, control characters and non-ASCII text. Redirects are followed only while
every hop is itself allowed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from kserve.errors import InvalidInput

from reviosa.serve.config import ServeConfig
from reviosa.serve.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

SCHEMES = ("s3", "http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 3
_ENCODED = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\U0010ffff\\]")
# s3fs blocks, and a read past its deadline runs on until s3fs gives up: its own threads, so such reads can never
# take the threads that decode and run the model.
_S3_THREADS = ThreadPoolExecutor(4, thread_name_prefix="s3-fetch")


@dataclass(frozen=True)
class Location:
    """A URL as the server it names reads it: lower-case scheme and host, explicit port, decoded path."""

    scheme: str
    host: str
    port: int | None
    path: str

    def under(self, prefix: "Location") -> bool:
        """True when this URL is ``prefix`` or below it at a ``/`` boundary."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        if not prefix.path or self.path == prefix.path:
            return True
        return self.path.startswith(prefix.path if prefix.path.endswith("/") else prefix.path + "/")


def locate(url: str, what: str = "`video_uri`") -> Location:
    """Parse and normalise ``url``, or raise ``InvalidInput`` naming what is not accepted."""
    def refuse(reason: str) -> InvalidInput:
        return InvalidInput(f"{what} {url!r}: {reason}")

    if _BAD_CHARS.search(url):
        raise refuse("spaces, control characters, backslashes and non-ASCII characters are not accepted "
                     "(percent-encode them)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise refuse("only s3://, http:// and https:// URIs are accepted")
    if "#" in url:
        raise refuse("fragments are not accepted")
    if "@" in parts.netloc:
        raise refuse("user information (user@host) is not accepted")
    if "%" in parts.netloc:
        raise refuse("percent-encoded host names are not accepted")
    if _ENCODED.search(parts.path):
        raise refuse("encoded dots, slashes, backslashes or percent signs (%2e %2f %5c %25 %00) are not accepted")
    if scheme == "s3":
        if port is not None or ":" in parts.netloc or not parts.netloc:
            raise refuse("an s3:// URI is s3://bucket/key")
        host, path = parts.netloc, parts.path
    else:
        if not parts.hostname:
            raise refuse("no host")
        host, port, path = parts.hostname.lower(), port or DEFAULT_PORTS[scheme], unquote(parts.path)
    for segment in path.split("/"):
        if segment.split(";", 1)[0] in (".", ".."):
            raise refuse("'.' and '..' path segments are not accepted")
    return Location(scheme, host, port, path)


def check_uri(uri, cfg: ServeConfig) -> str:
    """The URI when its normalised form lies under an allow-listed prefix, else 400 naming why."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInput("`video_uri` must be a non-empty string")
    where = locate(uri)
    if not any(where.under(locate(prefix, "allow-list entry")) for prefix in cfg.allowed_url_prefixes):
        raise InvalidInput(f"`video_uri` {uri!r} is not in the allow-list of this server "
                           f"({', '.join(cfg.allowed_url_prefixes) or 'empty: send frames instead'})")
    if where.scheme == "s3" and (not where.path.strip("/") or where.path.endswith("/")):
        raise InvalidInput(f"`video_uri` {uri!r} names a bucket or prefix, not an object")
    return uri


async def fetch_bytes(uri: str, cfg: ServeConfig, limit: int) -> bytes:
    """The bytes of an allow-listed URI, at most ``limit``, within ``fetch_timeout_s`` in all (else 504)."""
    uri = check_uri(uri, cfg)
    try:
        async with asyncio.timeout(cfg.fetch_timeout_s):
            if uri.startswith("s3://"):
                return await _read_s3(uri, limit)
            return await _read_http(uri, cfg, limit)
    except TimeoutError:
        raise UpstreamTimeout(f"`video_uri` {uri!r} was not read within {cfg.fetch_timeout_s:g} s") from None


async def _read_http(uri: str, cfg: ServeConfig, limit: int) -> bytes:
    import httpx

    too_large = InvalidInput(f"`video_uri` {uri!r} is larger than the limit of {limit} bytes")
    # The total deadline is the caller's; httpx's own timeout only stops a single silent read earlier.
    async with httpx.AsyncClient(follow_redirects=False, timeout=cfg.fetch_timeout_s,
                                 headers={"accept-encoding": "identity"}) as client:
        url = uri
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        target = urljoin(url, resp.headers.get("location", ""))
                        try:
                            url = check_uri(target, cfg)
                        except InvalidInput as err:
                            raise InvalidInput(f"`video_uri` {uri!r} redirects to {target!r}, which is refused: "
                                               f"{err}") from None
                        continue
                    if resp.status_code >= 500:
                        raise UpstreamError(f"`video_uri` {uri!r}: the video server answered HTTP "
                                            f"{resp.status_code} {resp.reason_phrase}")
                    if resp.status_code != 200:
                        raise InvalidInput(f"`video_uri` {uri!r}: HTTP {resp.status_code} {resp.reason_phrase}")
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise too_large
                    data = bytearray()
                    async for chunk in resp.aiter_raw():
                        data += chunk
                        if len(data) > limit:
                            raise too_large
                    return bytes(data)
            except httpx.TimeoutException:
                raise UpstreamTimeout(f"`video_uri` {uri!r} was not read within {cfg.fetch_timeout_s:g} s") from None
            except httpx.HTTPError as err:
                log.info("fetching %s failed: %s: %s", url, type(err).__name__, err)
                raise UpstreamError(f"`video_uri` {uri!r} cannot be reached") from None
    raise InvalidInput(f"`video_uri` {uri!r} redirects more than {MAX_REDIRECTS} times")


async def _read_s3(uri: str, limit: int) -> bytes:
    from reviosa.storage.errors import ObjectTooLargeError
    from reviosa.storage.fetch import read_bytes

    try:
        return await asyncio.get_running_loop().run_in_executor(_S3_THREADS, read_bytes, uri, limit)
    except ObjectTooLargeError as err:
        raise InvalidInput(f"`video_uri` {err}") from None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InvalidInput(f"`video_uri` {uri!r}: no such object") from None
    except TimeoutError:
        raise
    except Exception as err:
        # Any other failure is the store's (or a key it refuses), reported without the store's endpoint.
        status = _s3_status(err)
        log.info("reading %s failed: %s: %s", uri, type(err).__name__, err)
        if status is not None and 400 <= status < 500 and status not in (401, 403):
            raise InvalidInput(f"`video_uri` {uri!r}: the object store refused this key (HTTP {status})") from None
        raise UpstreamError(f"`video_uri` {uri!r}: the object store cannot be read") from None


def _s3_status(err: BaseException) -> int | None:
    """The HTTP status of the S3 answer behind ``err`` (s3fs keeps botocore's ClientError as the cause)."""
    while err is not None:
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        err = err.__cause__
    return None
