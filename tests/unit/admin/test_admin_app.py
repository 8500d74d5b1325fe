"""The admin API against a real restate-sdk app served by hypercorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from durably import __version__
from durably.admin import create_admin_app
from durably.schema import SchemaRegistry


class Store:
    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.doc

    def save(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.saves += 1


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def admin(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    registry = SchemaRegistry(store.load, store.save)
    app = create_admin_app(registry, ingress_endpoint="http://127.0.0.1:8080/")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://admin"
    ) as client:
        yield client


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


# -- registration -------------------------------------------------------------


async def test_register_over_h2_is_bidi(admin: httpx.AsyncClient, sdk_service_port: int) -> None:
    uri = f"http://127.0.0.1:{sdk_service_port}"
    r = await admin.post("/deployments", json={"uri": uri})
    assert r.status_code == 201, r.text
    body = r.json()
    dep_id = body["id"]
    assert dep_id.startswith("dp_1") and len(dep_id) == 26
    assert r.headers["location"] == f"deployments/{dep_id}"
    assert r.headers["content-type"] == "application/json"
    assert list(body) == [
        "id",
        "services",
        "min_protocol_version",
        "max_protocol_version",
        "sdk_version",
    ]
    assert body["min_protocol_version"] == 5 and body["max_protocol_version"] == 7
    assert body["sdk_version"] == "restate-sdk-python/1.2.0"
    services = by_name(body["services"])
    assert set(services) == {"Greeter", "Counter", "Signup"}

    greeter = services["Greeter"]
    assert list(greeter) == [
        "name",
        "ty",
        "handlers",
        "deployment_id",
        "revision",
        "public",
        "idempotency_retention",
        "journal_retention",
        "inactivity_timeout",
        "abort_timeout",
        "enable_lazy_state",
        "retry_policy",
    ]
    assert greeter["ty"] == "Service"
    assert greeter["deployment_id"] == dep_id and greeter["revision"] == 1
    assert greeter["idempotency_retention"] == "1d"
    assert greeter["inactivity_timeout"] == "1m"
    assert greeter["abort_timeout"] == "10m"
    assert greeter["retry_policy"] == {
        "initial_interval": "500ms",
        "exponentiation_factor": 2.0,
        "max_attempts": 70,
        "max_interval": "1m",
        "on_max_attempts": "Pause",
    }
    handlers = by_name(greeter["handlers"])
    assert handlers["greet"] == {
        "name": "greet",
        "public": True,
        "input_description": "JSON string",
        "output_description": "JSON string",
        "input_json_schema": {"type": "string"},
        "output_json_schema": {"type": "string"},
        "retry_policy": {"max_attempts": None},
    }
    assert handlers["secret"]["public"] is False

    counter = services["Counter"]
    assert counter["ty"] == "VirtualObject"
    assert counter["idempotency_retention"] == "2h"
    assert counter["inactivity_timeout"] == "30s"
    get = by_name(counter["handlers"])["get"]
    assert get["ty"] == "Shared" and get["inactivity_timeout"] == "5s"
    assert get["input_description"] == "none" and "input_json_schema" not in get
    assert by_name(counter["handlers"])["add"]["ty"] == "Exclusive"

    signup = services["Signup"]
    assert signup["ty"] == "Workflow"
    assert signup["workflow_completion_retention"] == "6h"
    assert by_name(signup["handlers"])["run"]["ty"] == "Workflow"

    # The list form: services as name/revision pairs, HTTP/2 and bidi.
    r = await admin.get("/deployments")
    assert r.status_code == 200
    [dep] = r.json()["deployments"]
    assert list(dep) == [
        "id",
        "uri",
        "protocol_type",
        "http_version",
        "created_at",
        "min_protocol_version",
        "max_protocol_version",
        "sdk_version",
        "services",
    ]
    assert dep["uri"] == uri + "/"
    assert dep["protocol_type"] == "BidiStream"
    assert dep["http_version"] == "HTTP/2.0"
    assert dep["created_at"].endswith("000000Z") and "T" in dep["created_at"]
    assert sorted(dep["services"], key=lambda s: s["name"]) == [
        {"name": "Counter", "revision": 1},
        {"name": "Greeter", "revision": 1},
        {"name": "Signup", "revision": 1},
    ]


async def test_register_over_http11_is_request_response(
    admin: httpx.AsyncClient, sdk_service_port: int
) -> None:
    r = await admin.post(
        "/deployments",
        json={
            "uri": f"http://127.0.0.1:{sdk_service_port}/",
            "use_http_11": True,
            "additional_headers": {"X-Token": "abc"},
        },
    )
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    counter = by_name(r.json()["services"])["Counter"]
    # Restate ignores inactivity timeouts in request/response mode and says so.
    assert counter["inactivity_timeout"] == "0s"
    assert counter["info"] == [
        {
            "code": "RT0021",
            "message": "The configured inactivity_timeout 30s will not be applied because the "
            "service is exposed in Request/Response mode.",
        }
    ]
    get = by_name(counter["handlers"])["get"]
    assert "inactivity_timeout" not in get
    assert get["info"][0]["code"] == "RT0021"

    r = await admin.get(f"/deployments/{dep_id}")
    assert r.status_code == 200
    d = r.json()
    assert d["protocol_type"] == "RequestResponse"
    assert d["http_version"] == "HTTP/1.1"
    assert d["additional_headers"] == {"x-token": "abc"}
    assert {s["name"] for s in d["services"]} == {"Greeter", "Counter", "Signup"}
    assert all("handlers" in s for s in d["services"])


async def test_reregister_same_uri_is_idempotent(
    admin: httpx.AsyncClient, sdk_service_port: int, store: Store
) -> None:
    uri = f"http://127.0.0.1:{sdk_service_port}"
    first = await admin.post("/deployments", json={"uri": uri})
    saves = store.saves
    again = await admin.post("/deployments", json={"uri": uri + "/"})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert store.saves == saves  # nothing changed, nothing written

    forced = await admin.post("/deployments", json={"uri": uri, "force": True})
    assert forced.status_code == 200
    assert forced.json()["id"] == first.json()["id"]
    assert {s["revision"] for s in forced.json()["services"]} == {2}


async def test_second_deployment_bumps_revisions(
    admin: httpx.AsyncClient, sdk_service_port: int
) -> None:
    a = await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}"})
    b = await admin.post("/deployments", json={"uri": f"http://localhost:{sdk_service_port}"})
    assert b.status_code == 201
    a_id, b_id = a.json()["id"], b.json()["id"]
    assert a_id != b_id
    greeter = (await admin.get("/services/Greeter")).json()
    assert greeter["revision"] == 2 and greeter["deployment_id"] == b_id
    # The old deployment stays addressable, showing the revision it registered.
    old = (await admin.get(f"/deployments/{a_id}")).json()
    assert {s["revision"] for s in old["services"]} == {1}

    # Removing needs force (Restate: 501, empty body).
    r = await admin.delete(f"/deployments/{b_id}")
    assert r.status_code == 501 and r.content == b""
    r = await admin.delete(f"/deployments/{b_id}", params={"force": "true"})
    assert r.status_code == 202
    greeter = (await admin.get("/services/Greeter")).json()
    assert greeter["revision"] == 1 and greeter["deployment_id"] == a_id
    r = await admin.get(f"/deployments/{b_id}")
    assert r.status_code == 404
    assert r.json() == {
        "message": f"The requested deployment '{b_id}' does not exist",
        "restate_code": None,
    }


async def test_dry_run_stores_nothing(admin: httpx.AsyncClient, sdk_service_port: int) -> None:
    r = await admin.post(
        "/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}", "dry_run": True}
    )
    assert r.status_code == 201
    assert {s["name"] for s in r.json()["services"]} == {"Greeter", "Counter", "Signup"}
    assert (await admin.get("/deployments")).json() == {"deployments": []}
    assert (await admin.get("/services")).json() == {"services": []}


# -- services and handlers ----------------------------------------------------


async def test_services_handlers_and_patch(admin: httpx.AsyncClient, sdk_service_port: int) -> None:
    await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}"})
    r = await admin.get("/services")
    assert r.status_code == 200
    assert {s["name"] for s in r.json()["services"]} == {"Greeter", "Counter", "Signup"}

    r = await admin.get("/services/Counter/handlers")
    assert set(by_name(r.json()["handlers"])) == {"add", "get"}
    r = await admin.get("/services/Greeter/handlers/greet")
    assert r.json()["input_description"] == "JSON string"

    r = await admin.patch(
        "/services/Counter",
        json={
            "public": False,
            "idempotency_retention": "90s",
            "journal_retention": "PT3H",
            "inactivity_timeout": "2 min",
            "abort_timeout": "1h 30m",
        },
    )
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["public"] is False
    assert all(h["public"] is False for h in c["handlers"])
    assert c["idempotency_retention"] == "1m 30s"
    assert c["journal_retention"] == "3h"
    assert c["inactivity_timeout"] == "2m"
    assert c["abort_timeout"] == "1h 30m"
    # Handler-level settings are the handler's own; PATCH does not touch them.
    assert by_name(c["handlers"])["get"]["inactivity_timeout"] == "5s"
    assert (await admin.get("/services/Counter")).json() == c

    r = await admin.patch("/services/Signup", json={"workflow_completion_retention": "2d"})
    assert r.json()["workflow_completion_retention"] == "2d"

    # Versioned prefixes serve the same routes.
    assert (await admin.get("/v4/services/Counter")).json() == c
    assert (await admin.get("/v2/health")).status_code == 200


async def test_persistence_round_trip(
    admin: httpx.AsyncClient, sdk_service_port: int, store: Store
) -> None:
    await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}"})
    await admin.patch("/services/Greeter", json={"idempotency_retention": "5h", "public": False})
    before = (await admin.get("/services")).json()
    deployments = (await admin.get("/deployments")).json()

    reloaded = SchemaRegistry(store.load, store.save)
    app = create_admin_app(reloaded)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a") as c2:
        assert (await c2.get("/services")).json() == before
        assert (await c2.get("/deployments")).json() == deployments


# -- errors --------------------------------------------------------------------


async def test_unreachable_uri(admin: httpx.AsyncClient, closed_port: int) -> None:
    r = await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{closed_port}"})
    assert r.status_code == 500
    body = r.json()
    assert body["restate_code"] == "META0003"
    assert f"error when calling 'http://127.0.0.1:{closed_port}/'" in body["message"]
    assert "Connection refused" in body["message"]


async def test_discovery_404(admin: httpx.AsyncClient, not_found_server: int) -> None:
    r = await admin.post(
        "/deployments",
        json={"uri": f"http://127.0.0.1:{not_found_server}", "use_http_11": True},
    )
    assert r.status_code == 500
    body = r.json()
    assert body["restate_code"] == "META0003"
    assert body["message"].startswith(
        "[META0003] [META0003] got status code '404'. Make sure the provided URI has the correct "
        "path where the Restate SDK endpoint is mounted."
    )
    assert body["message"].endswith("Body: no such thing")


async def test_h2_against_http11_only_server_explains(
    admin: httpx.AsyncClient, not_found_server: int
) -> None:
    r = await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{not_found_server}"})
    assert r.status_code == 500
    assert r.json()["restate_code"] == "META0003"
    assert "use_http_11" in r.json()["message"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "text"),
    [
        (
            b'{"uri":"http://x',
            {"content-type": "application/json"},
            400,
            "Failed to parse the request body as JSON: ",
        ),
        (
            b"",
            {"content-type": "application/json"},
            400,
            "Failed to parse the request body as JSON: EOF while parsing a value at line 1 "
            "column 0",
        ),
        (
            b'{"uri":"http://127.0.0.1:1"}',
            {},
            415,
            "Expected request with `Content-Type: application/json`",
        ),
        (
            b'{"url":"http://127.0.0.1:1"}',
            {"content-type": "application/json"},
            422,
            "Failed to deserialize the JSON body into the target type: data did not match any "
            "variant of untagged enum RegisterDeploymentRequest",
        ),
        (
            b'{"uri":"http://127.0.0.1:1","force":"yes"}',
            {"content-type": "application/json"},
            422,
            "Failed to deserialize the JSON body into the target type: ",
        ),
    ],
)
async def test_bad_register_bodies(
    admin: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, text: str
) -> None:
    r = await admin.post("/deployments", content=content, headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text.startswith(text)


async def test_relative_uri(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/deployments", json={"uri": "x"})
    assert r.status_code == 400
    assert r.json() == {
        "message": "The request field 'uri' is invalid. Reason: The provided uri x is not "
        "absolute, only absolute URIs can be used.",
        "restate_code": None,
    }


async def test_not_found_errors(admin: httpx.AsyncClient, sdk_service_port: int) -> None:
    await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}"})
    r = await admin.get("/services/Nope")
    assert r.status_code == 404
    assert r.json() == {
        "message": "The requested service 'Nope' does not exist",
        "restate_code": None,
    }
    r = await admin.get("/services/Nope/handlers")
    assert r.status_code == 404
    r = await admin.get("/services/Greeter/handlers/nope")
    assert r.json() == {
        "message": "The requested handler 'nope' on service 'Greeter' does not exist",
        "restate_code": None,
    }
    r = await admin.patch("/services/Nope", json={"public": True})
    assert r.status_code == 404
    assert r.json()["message"] == "not found in the schema registry: service with name 'Nope'"
    r = await admin.get("/deployments/dp_14d94EDJMKVqOBHUQJ29Eps")
    assert r.status_code == 404
    r = await admin.delete("/deployments/dp_14d94EDJMKVqOBHUQJ29Eps", params={"force": "true"})
    assert r.status_code == 404
    for bad, reason in [
        ("foo", "bad format"),
        ("dp_nonexist", "unrecognized codec version"),
        ("dp_1abc", "bad length"),
    ]:
        r = await admin.get(f"/deployments/{bad}")
        assert r.status_code == 400
        assert r.text == f"Invalid URL: Cannot parse `deployment` with value `{bad}`: {reason}"
    # `restate deployments describe http://...` sends the URL with its slashes encoded
    r = await admin.get("/deployments/http:%2F%2F127.0.0.1:9080%2F")
    assert r.status_code == 400
    assert r.text == (
        "Invalid URL: Cannot parse `deployment` with value `http://127.0.0.1:9080/`: bad format"
    )


async def test_bad_patch_bodies(admin: httpx.AsyncClient, sdk_service_port: int) -> None:
    await admin.post("/deployments", json={"uri": f"http://127.0.0.1:{sdk_service_port}"})
    r = await admin.patch("/services/Counter", json={"public": "yes"})
    assert r.status_code == 422
    assert r.text == (
        "Failed to deserialize the JSON body into the target type: public: invalid type: "
        'string "yes", expected a boolean'
    )
    r = await admin.patch("/services/Counter", json={"abort_timeout": "1 month"})
    assert r.status_code == 422
    assert r.text.endswith("abort_timeout: please use units of days or smaller")
    r = await admin.patch("/services/Counter", json={"idempotency_retention": "abc"})
    assert r.status_code == 422
    r = await admin.patch("/services/Counter", json={"workflow_completion_retention": "1d"})
    assert r.status_code == 400
    assert r.json() == {
        "message": "modifying retention time for service type VirtualObject is unsupported",
        "restate_code": None,
    }


async def test_routing_edges(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/nope")
    assert r.status_code == 404 and r.content == b""
    r = await admin.put("/services")
    assert r.status_code == 405 and r.headers["allow"] == "GET,HEAD"
    r = await admin.get("/v1/services")
    assert r.status_code == 400
    assert r.text == (
        "Unsupported Admin API version V1. This server supports versions between V2 and V4."
    )
    r = await admin.get("/health")
    assert r.status_code == 200 and r.content == b""


async def test_version_and_openapi(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/version")
    assert r.json() == {
        "version": __version__,
        "min_admin_api_version": 2,
        "max_admin_api_version": 4,
        "ingress_endpoint": "http://127.0.0.1:8080/",
        "features": {},
    }
    r = await admin.get("/openapi")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/deployments",
        "/deployments/{deployment}",
        "/services",
        "/services/{service}",
        "/services/{service}/handlers",
        "/services/{service}/handlers/{handler}",
        "/health",
        "/version",
    ):
        assert path in doc["paths"]
    assert "ServiceMetadata" in doc["components"]["schemas"]


def test_openapi_id_patterns() -> None:
    """The id patterns of the OpenAPI document (which the fuzz tests draw ids from) match
    every id the server makes, and a string that matches one is an id or, at most, one
    whose number is out of range (a 400 the document lists)."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from durably.admin.openapi import DEPLOYMENT_ID_PATTERN, INVOCATION_ID_PATTERN
    from durably.ids import InvocationId
    from durably.schema.ids import check_deployment_id, new_deployment_id

    for i in range(2000):
        inv = str(InvocationId.generate(service="S", handler="h", key=str(i)))
        assert re.fullmatch(INVOCATION_ID_PATTERN, inv), inv
        assert re.fullmatch(DEPLOYMENT_ID_PATTERN, new_deployment_id()), inv

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(INVOCATION_ID_PATTERN, fullmatch=True),
           st.from_regex(DEPLOYMENT_ID_PATTERN, fullmatch=True))
    def check(inv: str, dep: str) -> None:
        try:
            InvocationId.parse(inv)
        except ValueError as e:
            assert "out of range" in str(e), (inv, e)
        assert check_deployment_id(dep) in (None, "base62 decode error"), dep

    check()


async def test_register_with_unsendable_additional_headers(admin: httpx.AsyncClient) -> None:
    """Found by the fuzz test: header names or values HTTP cannot carry made discovery raise
    (a bare 500); they are a 422 that names the header."""
    for headers in ({"£": "x"}, {"a b": "x"}, {"x-ok": "line\nbreak"}, {"x-ok": "\u00e9"}):
        r = await admin.post("/deployments", json={"uri": "http://127.0.0.1:9/", "additional_headers": headers})
        assert r.status_code == 422, (headers, r.status_code, r.text)
        assert "additional_headers: invalid HTTP header" in r.text
