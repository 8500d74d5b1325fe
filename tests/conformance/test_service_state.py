"""`POST /services/{service}/state` and `GET /services/{service}/openapi` (the admin routes
Restate's UI uses to edit state and to build its playground). Status codes are Restate
1.7's; these tests pass against the real server too, except where noted: durably applies a
state change before it answers, so it can say 404 for an unknown service and 409 for a key
an invocation holds, where Restate answers 202 and drops or defers the change."""

from __future__ import annotations

import httpx
from tests.support.harness import Env, new_key, poll

SERVICES = ["Counter", "TestUtilsService"]


def _post(env: Env, service: str, body: object = None, **kw: object) -> httpx.Response:
    if body is not None:
        kw["json"] = body
    return env.client.post(f"{env.admin}/services/{service}/state", **kw)  # type: ignore[arg-type]


def _state(env: Env, key: str) -> dict[str, str]:
    rows = env.query("SELECT key, value_utf8 FROM state WHERE service_name = 'Counter' "
                     f"AND service_key = '{key}'")
    return {r["key"]: r["value_utf8"] for r in rows}


def test_replace_state(env: Env) -> None:
    key = new_key()
    assert env.call_json("Counter", "add", 5, key=key) == {"oldValue": 0, "newValue": 5}
    r = _post(env, "Counter", {"object_key": key, "new_state": {"counter": list(b"42")}})
    assert r.status_code == 202, r.text

    def replaced() -> None:
        assert _state(env, key) == {"counter": "42"}

    poll(replaced, timeout=10)
    assert env.call_json("Counter", "get", key=key) == 42
    # the whole state is replaced: keys not named are removed; a string value is its bytes
    r = _post(env, "Counter", {"object_key": key, "new_state": {"other": "x"}})
    assert r.status_code == 202

    def replaced_again() -> None:
        assert _state(env, key) == {"other": "x"}

    poll(replaced_again, timeout=10)


def test_request_errors(env: Env) -> None:
    r = _post(env, "TestUtilsService", {"object_key": "k", "new_state": {}})
    assert r.status_code == 400
    assert r.json()["message"] == "Cannot modify state for service type Service"
    r = _post(env, "Counter")
    assert r.status_code == 415
    assert r.text == "Expected request with `Content-Type: application/json`"
    r = _post(env, "Counter", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.text.startswith("Failed to parse the request body as JSON")
    r = _post(env, "Counter", {"new_state": {}})
    assert r.status_code == 422 and "missing field `object_key`" in r.text
    r = _post(env, "Counter", {"object_key": "k", "new_state": {"a": [300]}})
    assert r.status_code == 422 and "expected u8" in r.text


def test_unknown_service(env: Env) -> None:
    r = _post(env, "NoSuchService", {"object_key": "k", "new_state": {}})
    # Restate accepts (202) and drops it; durably says the service does not exist
    assert r.status_code == (202 if env.target == "restate" else 404), r.text


def test_service_openapi(env: Env) -> None:
    r = env.client.get(f"{env.admin}/services/Counter/openapi")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Counter"
    paths = "\n".join(doc["paths"])
    assert "Counter/{key}/add" in paths and "Counter/{key}/get" in paths
    r = env.client.get(f"{env.admin}/services/NoSuchService/openapi")
    assert r.status_code == 404
    assert r.json()["message"] == "The requested service 'NoSuchService' does not exist"
