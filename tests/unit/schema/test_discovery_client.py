"""discover() request shape and error mapping, over httpx's MockTransport."""

from __future__ import annotations

import socket

import httpx
import pytest

from durably.protocol.discovery import DISCOVERY_ACCEPT
from durably.schema.discovery_client import discover, discovery_url, normalize_uri
from durably.schema.errors import AdminError


def test_normalize_and_url() -> None:
    assert normalize_uri("http://h:9080") == "http://h:9080/"
    assert normalize_uri("HTTP://h:9080/svc") == "http://h:9080/svc"
    assert discovery_url("http://h:9080/") == "http://h:9080/discover"
    assert discovery_url("http://h:9080/svc") == "http://h:9080/svc/discover"
    for bad in ("x", "ftp://h/", "http://", ""):
        with pytest.raises(AdminError):
            normalize_uri(bad)


async def test_request_headers_and_result() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            headers={
                "content-type": "application/vnd.restate.endpointmanifest.v4+json",
                "x-restate-server": "sdk/9",
            },
            content=b"{}",
        )

    r = await discover(
        "http://h:9080/",
        False,
        {"authorization": "Bearer t"},
        transport=httpx.MockTransport(handle),
    )
    assert str(seen[0].url) == "http://h:9080/discover"
    assert seen[0].method == "GET"
    assert seen[0].headers["accept"] == DISCOVERY_ACCEPT
    assert seen[0].headers["authorization"] == "Bearer t"
    assert r.sdk_version == "sdk/9"
    assert r.content_type == "application/vnd.restate.endpointmanifest.v4+json"
    assert r.body == b"{}"


async def test_non_200() -> None:
    transport = httpx.MockTransport(lambda req: httpx.Response(503, content=b"busy"))
    with pytest.raises(AdminError) as e:
        await discover("http://h:9080/", transport=transport)
    assert e.value.status == 500 and e.value.restate_code == "META0003"
    assert "got status code '503 Service Unavailable'" in e.value.message
    assert e.value.message.endswith("Body: busy")


async def test_connection_refused_names_the_uri() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AdminError) as e:
        await discover(f"http://127.0.0.1:{port}/", timeout=5)
    assert f"error when calling 'http://127.0.0.1:{port}/'" in e.value.message
    assert "Connection refused" in e.value.message


async def test_timeout() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(AdminError) as e:
        await discover("http://h:9080/", transport=httpx.MockTransport(handle))
    assert "timed out" in e.value.message
