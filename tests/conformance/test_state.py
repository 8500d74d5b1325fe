"""State: object state read/modify/write, sends that update state, list keys + clear all."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["Counter", "Proxy", "MapObject"]


def test_add(env: Env) -> None:
    key = env.new_key()
    assert env.call_json("Counter", "add", 1, key=key) == {"oldValue": 0, "newValue": 1}
    assert env.call_json("Counter", "add", 2, key=key) == {"oldValue": 1, "newValue": 3}


def test_proxy_one_way_add(env: Env) -> None:
    key = env.new_key()
    for _ in range(3):
        inv_id = env.call_json("Proxy", "oneWayCall", env.proxy_request("Counter", "add", 1, key=key))
        assert isinstance(inv_id, str) and inv_id.startswith("inv")

    def counter_is_3() -> None:
        assert env.call_json("Counter", "get", key=key, idem=False) == 3

    env.poll(counter_is_3)


def test_list_state_and_clear_all(env: Env) -> None:
    m = env.new_key()
    m1 = m + "1"
    env.call_json("MapObject", "set", {"key": "my-key-0", "value": "my-value-0"}, key=m)
    env.call_json("MapObject", "set", {"key": "my-key-1", "value": "my-value-1"}, key=m)
    env.call_json("MapObject", "set", {"key": "my-key-2", "value": "my-value-2"}, key=m1)

    entries = env.call_json("MapObject", "clearAll", key=m)
    assert sorted(e["key"] for e in entries) == ["my-key-0", "my-key-1"]
    assert {e["key"]: e["value"] for e in entries} == {"my-key-0": "my-value-0", "my-key-1": "my-value-1"}

    assert env.call_json("MapObject", "get", "my-key-0", key=m) == ""
    assert env.call_json("MapObject", "get", "my-key-1", key=m) == ""
    assert env.call_json("MapObject", "get", "my-key-2", key=m1) == "my-value-2"
