"""`durably invocations describe ID`: the request (body and headers) and the output or
failure, in text and in --json, as the UI shows them.

Against durably by default; ``DURABLY_TEST_TARGET=restate`` runs the same tests against
the real Restate server (whose `sys_journal.entry_json` renders bodies differently)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import restate
from restate import Context, TerminalError
from restate.serde import BytesSerde
from tests.support.harness import REPO_ROOT, RestateServer, register

from durably.testing import AppServer, DurablyServer

svc = restate.Service("DescribeProbe")


@svc.handler()
async def greet(ctx: Context, person: dict[str, str]) -> dict[str, str]:
    return {"greeting": f"Hello {person['name']}!"}


@svc.handler()
async def refuse(ctx: Context, text: str) -> str:
    raise TerminalError("no, thank you", status_code=422)


@svc.handler(accept="*/*", content_type="application/octet-stream",
             input_serde=BytesSerde(), output_serde=BytesSerde())
async def raw(ctx: Context, data: bytes) -> bytes:
    return data[::-1]


app = restate.app([svc])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.environ.get("DURABLY_TEST_TARGET", "durably") == "restate":
        apps = AppServer()
        restate_server = RestateServer(tmp_path_factory.mktemp("restate"))
        try:
            url = apps.serve(app)
            restate_server.start()
            register(restate_server.admin_url, url, use_http_11=False)
            yield restate_server
        finally:
            restate_server.close()
            apps.close()
        return
    with DurablyServer() as s:
        s.register(app)
        yield s


def durably(server: Any, *args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    env["DURABLY_ADMIN_URL"] = server.admin_url
    r = subprocess.run([sys.executable, "-m", "durably", *args], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def invoke(server: Any, handler: str, **kwargs: object) -> str:
    r = httpx.post(f"{server.ingress_url}/DescribeProbe/{handler}", timeout=60, **kwargs)  # type: ignore[arg-type]
    inv_id = r.headers["x-restate-id"]
    assert inv_id.startswith("inv_"), r.headers
    return inv_id


def test_describe_shows_the_request_and_the_output(server: Any) -> None:
    inv_id = invoke(server, "greet", json={"name": "Ann", "city": "Oslo"},
                    headers={"x-customer": "c-17"})
    out = durably(server, "invocations", "describe", inv_id)
    assert "request headers:" in out
    assert "x-customer: c-17" in out
    # pretty JSON, one field a line
    assert '  "name": "Ann",\n' in out and '  "city": "Oslo"\n' in out
    assert "output:" in out and '"greeting": "Hello Ann!"' in out

    doc = json.loads(durably(server, "invocations", "describe", inv_id, "--json"))
    assert doc["request"]["headers"]["x-customer"] == "c-17"
    assert doc["request"]["body"] == {"name": "Ann", "city": "Oslo"}
    assert doc["output"] == {"value": {"greeting": "Hello Ann!"}}
    assert doc["invocation"]["id"] == inv_id and doc["journal"]


def test_describe_shows_a_failure(server: Any) -> None:
    inv_id = invoke(server, "refuse", json="please")
    out = durably(server, "invocations", "describe", inv_id)
    assert '"please"' in out
    assert "output:\n  failure 422: no, thank you" in out
    doc = json.loads(durably(server, "invocations", "describe", inv_id, "--json"))
    assert doc["output"] == {"failure": {"code": 422, "message": "no, thank you"}}


def test_describe_shows_bytes_that_are_not_text(server: Any) -> None:
    inv_id = invoke(server, "raw", content=b"\x00\xffab",
                    headers={"content-type": "application/octet-stream"})
    out = durably(server, "invocations", "describe", inv_id)
    assert "4 bytes, base64: AP9hYg==" in out
    doc = json.loads(durably(server, "invocations", "describe", inv_id, "--json"))
    assert doc["request"]["body_base64"] == "AP9hYg=="
    assert doc["output"] == {"value_base64": base64.b64encode(b"ba\xff\x00").decode()}
