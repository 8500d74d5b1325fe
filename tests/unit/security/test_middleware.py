"""The ASGI guards on their own: tokens, the Host check, the admin body limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from durably.security.middleware import AdminGuard, IngressGuard, TokenCheck
from durably.security.options import is_loopback, split_tokens


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body and answers with its size and the headers it saw."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RuntimeError("client went away")
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    names = ",".join(n.decode() for n, _ in scope["headers"])
    body = f"{size} {names}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client(app: Any, host: str = "127.0.0.1:9070") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


def test_token_check() -> None:
    check = TokenCheck(["a1", "b2"])
    assert check.accepts([(b"authorization", b"Bearer a1")])
    assert check.accepts([(b"authorization", b"bearer b2")])
    for value in (b"Bearer a", b"Bearer a1x", b"Basic a1", b"a1", b"Bearer "):
        assert not check.accepts([(b"authorization", value)])
    assert not check.accepts([])
    assert not TokenCheck([])
    assert split_tokens(" new, old ,") == ("new", "old")


@pytest.mark.parametrize(
    "host,ok",
    [("127.0.0.1:9070", True), ("localhost:9070", True), ("[::1]:9070", True),
     ("ui.localhost:9070", True), ("LOCALHOST", True),
     ("rebind.attacker.example:9070", False), ("127.0.0.1.nip.io", False), ("10.0.0.1", False)],
)
async def test_host_check_on_a_loopback_admin(host: str, ok: bool) -> None:
    async with client(AdminGuard(echo), host) as c:
        r = await c.get("/deployments")
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 421


async def test_no_host_check_when_bound_beyond_loopback() -> None:
    async with client(AdminGuard(echo, bind="0.0.0.0"), "durably.example.com") as c:
        assert (await c.get("/x")).status_code == 200
    assert is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("0.0.0.0")


async def test_admin_body_limit() -> None:
    app = AdminGuard(echo, max_body_bytes=1000)
    async with client(app) as c:
        assert (await c.post("/query", content=b"x" * 1000)).status_code == 200
        r = await c.post("/query", content=b"x" * 1001)
        assert r.status_code == 413 and "1000 bytes" in r.json()["message"]

        async def chunks() -> Any:
            for _ in range(5):
                yield b"x" * 300

        assert (await c.post("/query", content=chunks())).status_code == 413


async def test_ingress_token_is_taken_out_of_the_headers() -> None:
    app = IngressGuard(echo, tokens=["t"])
    async with client(app) as c:
        assert (await c.get("/restate/health")).status_code == 200
        r = await c.post("/S/h", headers={"authorization": "Bearer t", "x-other": "1"})
        assert r.status_code == 200
        assert "authorization" not in r.text and "x-other" in r.text
        r = await c.post("/S/h")
        assert r.status_code == 401 and r.json()["source"] == "ingress"
