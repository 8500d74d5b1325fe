"""ASGI middleware in front of the ingress and the admin apps: bearer tokens, the admin body
limit and, on a loopback-bound admin port, the Host check against DNS rebinding.

Everything here looks only at the request head (and counts body bytes as they arrive), so a
refused request costs no more than reading its headers.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from durably.security.options import is_loopback

__all__ = ["AdminGuard", "IngressGuard", "TokenCheck", "send_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenCheck:
    """Accepts `Authorization: Bearer <t>` for any of the configured tokens.

    Every configured token is compared, each with `hmac.compare_digest`, so the time taken
    tells neither which token nor how much of one matched.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens = tuple(t.encode() for t in tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def accepts(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        given = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = rest.strip()
                break
        return self.matches(given)

    def matches(self, given: bytes) -> bool:
        ok = False
        for token in self.tokens:
            ok |= hmac.compare_digest(given, token)
        return ok and bool(given)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A whole answer to an ASGI `send`, for the guards that answer without the app."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _answer(
    send: Send, status: int, doc: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_response(send, status, orjson.dumps(doc), b"application/json", headers)


_UNAUTHORIZED_HEADERS = [(b"www-authenticate", b'Bearer realm="durably"')]


class AdminGuard:
    """Tokens, the body limit and the Host check of the admin port."""

    def __init__(
        self,
        app: App,
        *,
        tokens: Iterable[str] = (),
        max_body_bytes: int = 2 * 1024 * 1024,
        bind: str = "127.0.0.1",
        metrics_public: bool = False,
    ) -> None:
        self.app = app
        self.tokens = TokenCheck(tokens)
        self.max_body = max_body_bytes
        # A browser page from any site can reach a loopback port through a name that
        # resolves to 127.0.0.1 (DNS rebinding); its requests then carry that name as Host.
        self.loopback_only = is_loopback(bind)
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.loopback_only and not _loopback_host(scope):
            await _answer(
                send,
                421,
                {
                    "message": "this admin API answers only to a loopback host name "
                    "(localhost, 127.0.0.1, [::1])"
                },
            )
            return
        open_path = path == "/health" or (self.metrics_public and path == "/metrics")
        if self.tokens and not open_path and not self.tokens.accepts(scope["headers"]):
            if path == "/" or path == "/ui" or path.startswith("/ui/"):
                await self._ui_sign_in(scope, receive, send)
                return
            await _answer(
                send,
                401,
                {"message": "missing or wrong admin token: send 'Authorization: Bearer <token>'"},
                _UNAUTHORIZED_HEADERS,
            )
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _answer(send, 413, _too_large(self.max_body))
            return
        await self._limited(scope, receive, send)

    async def _ui_sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A browser cannot send a bearer header: the UI's pages accept the token from an
        HttpOnly, SameSite=Strict cookie that `/ui/login` sets after checking it.

        The cookie holds the token itself, so rotating tokens signs out whoever used a
        removed one; SameSite=Strict keeps it off every request another site starts."""
        path = scope.get("path", "")
        if path != "/ui/login":
            if self.tokens.matches(_cookie(scope, _UI_COOKIE)):
                await self._limited(scope, receive, send)
                return
            # relative, so that it works behind a path prefix too
            if path.startswith("/ui/"):
                login = "../" * path[len("/ui/"):].count("/") + "login"
            else:  # "/" or "/ui"
                login = "ui/login"
            await _html(send, 303, "", [(b"location", login.encode())])
            return
        if scope.get("method") == "POST":
            body = await _read_body(receive, 4096)
            fields = parse_qs(body.decode("utf-8", errors="replace"))
            token = (fields.get("token") or [""])[0].strip().encode()
            if _cross_site(scope):
                await _html(send, 403, _login_page("Refused: not sent from this page."))
                return
            if not self.tokens.matches(token):
                await _html(send, 401, _login_page("Wrong token."))
                return
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            cookie = f"{_UI_COOKIE}={token.decode()}; HttpOnly; SameSite=Strict; Path=/{secure}"
            await _html(send, 303, "", [(b"location", b"./"), (b"set-cookie", cookie.encode())])
            return
        await _html(send, 200, _login_page(""))

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, started, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not refused:
                    refused = True
                    if not started:
                        started = True
                        await _answer(send, 413, _too_large(self.max_body))
                    # the app sees a client that went away and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 was the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise


class IngressGuard:
    """The ingress token. The token is taken out of the request's headers once checked, so
    it never reaches a journal (the ingress stores callers' headers with the input)."""

    def __init__(self, app: App, *, tokens: Iterable[str] = ()) -> None:
        self.app = app
        self.tokens = TokenCheck(tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        if scope.get("path") != "/restate/health":
            if not self.tokens.accepts(scope["headers"]):
                await _answer(
                    send,
                    401,
                    {
                        "code": 401,
                        "message": "missing or wrong ingress token: send "
                        "'Authorization: Bearer <token>'",
                        "source": "ingress",
                    },
                    _UNAUTHORIZED_HEADERS,
                )
                return
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"authorization"]
        await self.app(scope, receive, send)


_UI_COOKIE = "durably_admin_token"


def _login_page(error: str) -> str:
    note = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Sign in · durably</title></head><body><main>"
        "<h1>durably</h1><p>This admin API asks for a token (<code>--admin-token</code>).</p>"
        f'{note}<form method="post" action="login"><label for="token">Admin token</label> '
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        'required autofocus> <button type="submit">Sign in</button></form></main></body></html>'
    )


async def _html(
    send: Send, status: int, page: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_response(send, status, page.encode(), b"text/html; charset=utf-8", [
        (b"content-security-policy", b"default-src 'none'; form-action 'self'"),
        (b"cache-control", b"no-store"),
        *headers,
    ])


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += bytes(message.get("body", b""))
        if len(body) > limit or not message.get("more_body", False):
            return body[:limit]


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def _cookie(scope: Scope, wanted: str) -> bytes:
    raw = _header(scope, b"cookie")
    if raw is None:
        return b""
    for part in raw.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
            return value.encode("latin-1")
    return b""


def _cross_site(scope: Scope) -> bool:
    site = _header(scope, b"sec-fetch-site")
    if site is not None and site not in (b"same-origin", b"none"):
        return True
    origin = _header(scope, b"origin")
    if origin is None:
        return False
    return origin == b"null" or urlsplit(origin.decode("latin-1")).netloc.encode() != (
        _header(scope, b"host") or b""
    )


def _too_large(limit: int) -> dict[str, Any]:
    return {"message": f"the request body exceeds the limit of {limit} bytes"}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _loopback_host(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                host = host[: host.find("]") + 1] if "]" in host else host
            else:
                host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            return is_loopback(host) or host.endswith(".localhost")
    # HTTP/1.0 without Host: no name was used, so no name can have been rebound
    return True
