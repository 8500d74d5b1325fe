"""Removed SDK-suite PrivateService test: a service made private is refused at the ingress
(400) but stays callable from other services; made public again it is callable again."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["Counter", "Proxy"]


def test_private_service(env: Env) -> None:
    key = env.new_key()
    env.call_json("Counter", "add", 1, key=key)

    r = env.patch_service("Counter", public=False)
    assert r.status_code == 200, r.text
    try:

        def refused() -> None:
            r = env.call("Counter", "get", key=key, idem=False)
            assert r.status_code == 400, r.text

        env.poll(refused)

        # private services stay callable from services
        env.call_json("Proxy", "oneWayCall", env.proxy_request("Counter", "add", 1, key=key))
    finally:
        r = env.patch_service("Counter", public=True)
        assert r.status_code == 200, r.text

    def counter_is_2() -> None:
        assert env.call_json("Counter", "get", key=key, idem=False) == 2

    env.poll(counter_is_2)
