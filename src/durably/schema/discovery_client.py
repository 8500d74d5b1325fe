"""The one piece of I/O in schema/: `GET {uri}/discover` against a deployment.

Like Restate we talk cleartext HTTP/2 with prior knowledge to `http://` deployments (that is
what the TypeScript SDK's `listen()` and hypercorn speak, and the Python SDK answers
BIDI_STREAM over it), HTTP/1.1 when the deployment was registered with `use_http_11`, and let
ALPN decide for `https://`. The HTTP version that discovery used is recorded and reused for
invocations.

Failures become AdminError with Restate's wording (`[META0003] ... error when calling ...`).
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from durably.protocol.discovery import DISCOVERY_ACCEPT
from durably.schema.errors import AdminError

if TYPE_CHECKING:
    from durably.security.identity import RequestSigner

__all__ = [
    "DEFAULT_DISCOVERY_TIMEOUT",
    "DiscoveryResponse",
    "discover",
    "discovery_url",
    "normalize_uri",
]

# Connecting should be quick on a healthy deployment; reading the manifest may need an SDK's
# cold start (e.g. a serverless container), so it gets longer.
DEFAULT_DISCOVERY_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_META0003 = "META0003"
# A deployment's manifest is a few KiB; a URI that answers with something huge (by mistake,
# or aimed at some other server) must not be read whole into memory.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# Of a failed answer, only the start goes into the error message: enough to recognise what
# answered, not a way to read arbitrary internal pages through durably.
MAX_ERROR_BODY_BYTES = 1024


@dataclass(frozen=True)
class DiscoveryResponse:
    content_type: str
    body: bytes
    http_version: str  # "HTTP/2.0" or "HTTP/1.1", as Restate prints it
    sdk_version: str | None  # the x-restate-server response header
    headers: dict[str, str] = field(default_factory=dict)


def normalize_uri(uri: str) -> str:
    """Restate's canonical form of a deployment URI: `http://host:port` gets a trailing `/`.

    Raises AdminError for anything that is not an absolute http(s) URI.
    """

    def invalid(reason: str) -> AdminError:
        return AdminError(400, f"The request field 'uri' is invalid. Reason: {reason}")

    if not isinstance(uri, str) or not uri:
        raise invalid("The uri must be a non-empty string.")
    try:
        parts = urlsplit(uri)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as e:
        raise invalid(f"The provided uri {uri} cannot be parsed: {e}.") from None
    if not parts.scheme or not parts.netloc:
        raise invalid(f"The provided uri {uri} is not absolute, only absolute URIs can be used.")
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid(
            f"The provided uri {uri} has scheme '{parts.scheme}', only http and https are "
            "supported."
        )
    if not parts.hostname or not port_ok:
        raise invalid(f"The provided uri {uri} has no valid host and port.")
    path = parts.path or "/"
    out = f"{parts.scheme.lower()}://{parts.netloc}{path}"
    if parts.query:
        out += f"?{parts.query}"
    return out


def discovery_url(uri: str) -> str:
    parts = urlsplit(uri)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    url = f"{parts.scheme}://{parts.netloc}{path}discover"
    if parts.query:
        url += f"?{parts.query}"
    return url


def _client(uri: str, use_http_11: bool, timeout: httpx.Timeout) -> httpx.AsyncClient:
    https = uri.lower().startswith("https://")
    if use_http_11:
        # For TLS servers ALPN may still pick HTTP/2, as Restate documents.
        return httpx.AsyncClient(http1=True, http2=https, timeout=timeout)
    if https:
        return httpx.AsyncClient(http1=True, http2=True, timeout=timeout)
    # Cleartext HTTP/2 with prior knowledge.
    return httpx.AsyncClient(http1=False, http2=True, timeout=timeout)


def _connect_detail(exc: BaseException) -> str:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            name = {
                errno.ECONNREFUSED: "Connection refused",
                errno.EHOSTUNREACH: "No route to host",
                errno.ENETUNREACH: "Network is unreachable",
                errno.ECONNRESET: "Connection reset by peer",
            }.get(cur.errno, cur.strerror or str(cur))
            return f"{name} (os error {cur.errno})"
        cur = cur.__cause__ or cur.__context__
    text = str(exc) or type(exc).__name__
    if "connection refused" in text.lower() or "errno 111" in text.lower():
        return "Connection refused (os error 111)"
    return text


async def discover(
    uri: str,
    use_http_11: bool = False,
    headers: dict[str, str] | None = None,
    *,
    timeout: httpx.Timeout | float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    signer: RequestSigner | None = None,
) -> DiscoveryResponse:
    """Fetch the endpoint manifest of the deployment at `uri` (already normalized).

    `headers` are the deployment's additional headers, sent with discovery as with every
    invocation. `transport` lets tests substitute an in-process transport. With a `signer`
    the request carries durably's request identity (Restate adds the deployment's headers
    after signing, and so do we).
    """
    url = discovery_url(uri)
    req_headers = {"accept": DISCOVERY_ACCEPT}
    if signer is not None:
        req_headers.update(signer.headers("/discover"))
    for k, v in (headers or {}).items():
        req_headers[k] = v
    to = DEFAULT_DISCOVERY_TIMEOUT if timeout is None else httpx.Timeout(timeout)
    if transport is not None:
        client = httpx.AsyncClient(transport=transport, timeout=to)
    else:
        client = _client(uri, use_http_11, to)
    where = f"error when calling '{uri}'"
    try:
        async with client:
            async with client.stream("GET", url, headers=req_headers) as resp:
                limit = MAX_MANIFEST_BYTES if resp.status_code == 200 else MAX_ERROR_BODY_BYTES
                body, complete = await _read_at_most(resp, limit)
    except _TooLarge:
        raise AdminError(
            500,
            f"[{_META0003}] [{_META0003}] {where}: the discovery answer is larger than "
            f"{MAX_MANIFEST_BYTES} bytes",
            _META0003,
        ) from None
    except httpx.TimeoutException as e:
        kind = "connecting" if isinstance(e, httpx.ConnectTimeout) else "waiting for the response"
        raise AdminError(
            500, f"[{_META0003}] [{_META0003}] {where}: timed out {kind}", _META0003
        ) from None
    except httpx.ConnectError as e:
        raise AdminError(
            500,
            f"[{_META0003}] [{_META0003}] {where}: connection error: {_connect_detail(e)}",
            _META0003,
        ) from None
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as e:
        hint = ""
        if not use_http_11 and not uri.lower().startswith("https://"):
            hint = (
                ". The deployment was contacted with cleartext HTTP/2 (prior knowledge); if it "
                "only speaks HTTP/1.1 (e.g. uvicorn), register it with use_http_11: true"
            )
        raise AdminError(
            500,
            f"[{_META0003}] [{_META0003}] {where}: protocol error: {e or type(e).__name__}{hint}",
            _META0003,
        ) from None
    except httpx.HTTPError as e:
        raise AdminError(
            500, f"[{_META0003}] [{_META0003}] {where}: {e or type(e).__name__}", _META0003
        ) from None

    resp_headers = {k.lower(): v for k, v in resp.headers.items()}
    if resp.status_code != 200:
        text = body.decode("utf-8", "replace")
        if not complete:
            text += f"... (cut at {MAX_ERROR_BODY_BYTES} bytes)"
        hdrs = json.dumps(resp_headers, ensure_ascii=False)
        if resp.status_code == 404:
            status = (
                "'404'. Make sure the provided URI has the correct path where the Restate SDK "
                "endpoint is mounted"
            )
        else:
            reason = resp.reason_phrase
            status = f"'{resp.status_code} {reason}'" if reason else f"'{resp.status_code}'"
        if len(hdrs) > MAX_ERROR_BODY_BYTES:
            hdrs = hdrs[:MAX_ERROR_BODY_BYTES] + "..."
        raise AdminError(
            500,
            f"[{_META0003}] [{_META0003}] got status code {status}. "
            f"Response headers: {hdrs}. Body: {text}"
            + _identity_hint(resp.status_code, resp_headers, signer),
            _META0003,
        )
    http_version = "HTTP/2.0" if resp.http_version == "HTTP/2" else resp.http_version
    return DiscoveryResponse(
        content_type=resp_headers.get("content-type", ""),
        body=body,
        http_version=http_version,
        sdk_version=resp_headers.get("x-restate-server"),
        headers=resp_headers,
    )


class _TooLarge(Exception):
    pass


async def _read_at_most(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body up to `limit` bytes, and whether it was complete. A 200 larger than the
    limit raises _TooLarge; an error answer is cut (its start is all the message shows)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if resp.status_code == 200:
                raise _TooLarge
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def _identity_hint(status: int, headers: dict[str, str], signer: RequestSigner | None) -> str:
    """Why an SDK answered 401: it checks request identity (it answers so with an empty body
    when the signature is missing or made with a key it was not given)."""
    if status != 401 or "x-restate-server" not in headers:
        return ""
    if signer is None:
        return (
            ". The service refused durably's request identity: it only accepts signed "
            "requests; start durably with --request-identity-private-key-pem-file and add the "
            "key's id to the service's identity keys"
        )
    return (
        f". The service refused durably's request identity (key id {signer.kid}): add this "
        "key id to the service's identity keys"
    )
