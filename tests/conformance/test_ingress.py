"""Ingress: request headers reach the handler; raw (non-JSON) bodies go through untouched."""

from __future__ import annotations

import os

from tests.support.harness import Env

SERVICES = ["TestUtilsService"]
SERVER_OPTIONS = {"cleanup_interval": "1s"}


def test_headers_pass_through(env: Env) -> None:
    headers = env.call_json(
        "TestUtilsService", "echoHeaders", headers={"x-my-custom-header": "x-my-custom-value"}
    )
    assert headers.get("x-my-custom-header") == "x-my-custom-value", headers


def test_raw_handler(env: Env) -> None:
    payload = os.urandom(100)
    r = env.call(
        "TestUtilsService", "rawEcho", payload, raw=True,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert r.content == payload
