"""The limits where Restate's admin API already behaves a given way: durably answers the same
(the real Restate server is the oracle)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from tests.support.harness import DurablyServer, RestateServer, ServerProcess


@pytest.fixture(scope="module", params=["durably", "restate"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp(request.param)
    proc: ServerProcess = DurablyServer(base) if request.param == "durably" else RestateServer(base)
    proc.start()
    yield proc
    proc.close()


def test_query_without_a_json_content_type_is_415(server: ServerProcess) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        r = httpx.post(f"{server.admin_url}/query", content=b'{"query":"SELECT 1"}',
                       headers=headers, timeout=30)
        assert r.status_code == 415, (content_type, r.text)
        assert r.text == "Expected request with `Content-Type: application/json`"


def test_admin_bodies_beyond_2mb_are_413(server: ServerProcess) -> None:
    sql = "SELECT 1 AS x /*" + "x" * (2 * 1024 * 1024) + "*/"
    r = httpx.post(f"{server.admin_url}/query", content=orjson.dumps({"query": sql}),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    under = "SELECT 1 AS x /*" + "x" * (1024 * 1024) + "*/"
    r = httpx.post(f"{server.admin_url}/query", content=orjson.dumps({"query": under}),
                   headers={"content-type": "application/json", "accept": "application/json"},
                   timeout=60)
    assert r.status_code == 200, r.text[:300]
