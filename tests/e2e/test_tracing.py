"""`durably serve --tracing-endpoint`: spans arrive at an OTLP/HTTP receiver run by the test.

The receiver decodes what durably sends with the OpenTelemetry protobuf definitions
(opentelemetry-proto), as a collector would.
"""

from __future__ import annotations

import datetime
import gzip
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import restate
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from restate import Context
from tests.support.harness import REPO_ROOT, free_port, poll

from durably.testing import DurablyServer

SRC = str(REPO_ROOT / "src")

first_svc = restate.Service("TraceA")
second_svc = restate.Service("TraceB")
third_svc = restate.Service("TraceC")


@third_svc.handler()
async def third(ctx: Context, name: str) -> str:
    await ctx.sleep(datetime.timedelta(milliseconds=10))
    seen = ctx.request().attempt_headers.get("traceparent", "")
    return f"{name}|{seen}"


@second_svc.handler()
async def second(ctx: Context, name: str) -> str:
    upper = await ctx.run_typed("upper", lambda: name.upper())
    return await ctx.service_call(third, arg=upper)


@first_svc.handler()
async def first(ctx: Context, name: str) -> str:
    return await ctx.service_call(second, arg=name)


slow_svc = restate.Service("TraceSlow")


@slow_svc.handler()
async def nap(ctx: Context) -> str:
    await ctx.sleep(datetime.timedelta(seconds=2))
    return "rested"


flaky_svc = restate.Service("TraceFlaky")
flaky_calls: list[str] = []


@flaky_svc.handler()
async def once_broken(ctx: Context, key: str) -> str:
    flaky_calls.append(key)
    if flaky_calls.count(key) == 1:
        raise RuntimeError("broken the first time")
    return "fixed"


waiter_svc = restate.Service("TraceWaiter")
awakeables: list[str] = []


@waiter_svc.handler()
async def wait_for_approval(ctx: Context) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)
    awakeables.append(awakeable_id)
    return await promise


app = restate.app([first_svc, second_svc, third_svc, slow_svc, flaky_svc, waiter_svc])


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()
        self.resources: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for rs in request.resource_spans:
                        receiver.resources.append(
                            {a.key: a.value.string_value for a in rs.resource.attributes}
                        )
                        for ss in rs.scope_spans:
                            receiver.spans.extend(ss.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(receiver: Receiver) -> Iterator[DurablyServer]:
    with DurablyServer(extra_args=["--tracing-endpoint", receiver.url]) as s:
        s.register(app)
        yield s


def test_a_call_chain_of_three_handlers_is_one_trace(server: DurablyServer, receiver: Receiver) -> None:
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    r = httpx.post(
        f"{server.ingress_url}/TraceA/first",
        json="ann",
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    name, seen = r.json().split("|")
    assert name == "ANN"

    targets = {"TraceA/first", "TraceB/second", "TraceC/third"}

    def invocation_spans() -> dict[str, Any]:
        found = {
            attrs(s)["restate.invocation.target"]: s
            for s in receiver.snapshot()
            if s.name.startswith("invocation ") and s.trace_id.hex() == trace_id
        }
        assert set(found) == targets, sorted(found)
        return found

    invocations = poll(invocation_spans, timeout=30, interval=0.2)
    spans = [s for s in receiver.snapshot() if s.trace_id.hex() == trace_id]
    attempts = {
        t: [s for s in spans if s.name == f"attempt {t}"] for t in targets
    }
    assert all(attempts.values()), attempts

    # the ingress caller's span is the parent; each callee hangs under its caller's attempt
    assert invocations["TraceA/first"].parent_span_id.hex() == caller_span
    assert invocations["TraceB/second"].parent_span_id in {s.span_id for s in attempts["TraceA/first"]}
    assert invocations["TraceC/third"].parent_span_id in {s.span_id for s in attempts["TraceB/second"]}
    for t in targets:
        for a in attempts[t]:
            assert a.parent_span_id == invocations[t].span_id

    # Restate's attribute names
    a = attrs(invocations["TraceB/second"])
    assert a["restate.invocation.id"].startswith("inv_")
    assert a["rpc.service"] == "TraceB" and a["rpc.method"] == "second"
    assert a["restate.invocation.result"] == "success"
    assert attrs(attempts["TraceB/second"][0])["restate.deployment.id"].startswith("dp_")

    # journal actions as events
    def events(t: str) -> set[str]:
        return {e.name for s in attempts[t] for e in s.events}

    assert {"call", "call completed"} <= events("TraceA/first")
    assert {"run", "run completed", "call"} <= events("TraceB/second")
    assert "sleep" in events("TraceC/third")
    call = next(e for s in attempts["TraceA/first"] for e in s.events if e.name == "call")
    assert {a.key: a.value.string_value for a in call.attributes}[
        "restate.journal.call.target"] == "TraceB/second"

    # the service was handed the context of its attempt span
    _, seen_trace, seen_span, _ = seen.split("-")
    assert seen_trace == trace_id
    assert seen_span in {s.span_id.hex() for s in attempts["TraceC/third"]}
    assert any(r.get("service.name") == "durably" for r in receiver.resources)


def test_without_a_caller_context_a_trace_starts_at_the_ingress(
    server: DurablyServer, receiver: Receiver
) -> None:
    r = httpx.post(f"{server.ingress_url}/TraceC/third", json="solo", timeout=60)
    assert r.status_code == 200, r.text
    seen_trace = r.json().split("|")[1].split("-")[1]

    def root() -> Any:
        spans = [s for s in receiver.snapshot() if s.trace_id.hex() == seen_trace
                 and s.name == "invocation TraceC/third"]
        assert len(spans) == 1
        return spans[0]

    span = poll(root, timeout=30, interval=0.2)
    assert span.parent_span_id == b""


def test_a_failed_attempt_is_a_span_in_error(server: DurablyServer, receiver: Receiver) -> None:
    key = secrets.token_hex(4)
    r = httpx.post(f"{server.ingress_url}/TraceFlaky/once_broken", json=key, timeout=60)
    assert r.json() == "fixed"
    invocation_id = r.headers["x-restate-id"]

    def spans() -> tuple[Any, list[Any]]:
        mine = [s for s in receiver.snapshot() if attrs(s).get("restate.invocation.id") == invocation_id]
        invocation = [s for s in mine if s.name == "invocation TraceFlaky/once_broken"]
        attempts = sorted((s for s in mine if s.name.startswith("attempt ")),
                          key=lambda s: attrs(s)["restate.invocation.attempt"])
        assert len(invocation) == 1 and len(attempts) == 2
        return invocation[0], attempts

    invocation, (failed, succeeded) = poll(spans, timeout=30, interval=0.2)
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert "broken the first time" in failed.status.message
    assert attrs(failed)["restate.invocation.attempt.outcome"] == "failed"
    assert succeeded.status.code != succeeded.status.STATUS_CODE_ERROR
    assert attrs(succeeded)["restate.invocation.attempt.outcome"] == "completed"
    assert attrs(invocation)["restate.invocation.result"] == "success"


def test_an_awakeable_completion_is_an_event(server: DurablyServer, receiver: Receiver) -> None:
    sent = httpx.post(f"{server.ingress_url}/TraceWaiter/wait_for_approval/send")
    invocation_id = sent.json()["invocationId"]
    def created() -> str:
        assert awakeables, "the handler has not created its awakeable yet"
        return awakeables[0]

    awakeable_id = poll(created, timeout=30, interval=0.05)
    resolved = httpx.post(f"{server.ingress_url}/restate/awakeables/{awakeable_id}/resolve",
                          json="approved")
    assert resolved.status_code in (200, 202), resolved.text
    done = httpx.get(f"{server.ingress_url}/restate/invocation/{invocation_id}/attach", timeout=60)
    assert done.json() == "approved"

    def received() -> None:
        events = {e.name for s in receiver.snapshot()
                  if attrs(s).get("restate.invocation.id") == invocation_id for e in s.events}
        assert "signal received" in events, events

    poll(received, timeout=30, interval=0.2)


def test_attempts_after_a_crash_continue_the_trace(server: DurablyServer, receiver: Receiver) -> None:
    trace_id = secrets.token_hex(16)
    r = httpx.post(
        f"{server.ingress_url}/TraceSlow/nap/send",
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert r.status_code == 202, r.text
    invocation_id = r.json()["invocationId"]
    server.restart()  # the invocation span is lost with the process, its context is not
    done = httpx.get(f"{server.ingress_url}/restate/invocation/{invocation_id}/attach", timeout=60)
    assert done.json() == "rested"

    def resumed() -> tuple[Any, list[Any]]:
        spans = [s for s in receiver.snapshot() if attrs(s).get("restate.invocation.id") == invocation_id]
        closing = [s for s in spans if s.name == "invocation TraceSlow/nap (resumed)"]
        assert len(closing) == 1
        return closing[0], spans

    closing, spans = poll(resumed, timeout=30, interval=0.2)
    assert {s.trace_id.hex() for s in spans} == {trace_id}
    attempts = [s for s in spans if s.name == "attempt TraceSlow/nap"]
    assert attempts  # at least the one after the restart (the first may have died unsent)
    # every attempt and the closing span hang under the one invocation span of before
    assert len({s.parent_span_id for s in [*attempts, closing]}) == 1


@pytest.mark.parametrize("endpoint", ["localhost:4318", "ftp://collector"])
def test_a_bad_endpoint_is_one_line(endpoint: str, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--tracing-endpoint", endpoint,
         "--data-dir", str(tmp_path / "data"), "--ingress-port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode == 2
    assert r.stderr.strip().startswith("durably: the tracing endpoint must be an http(s) URL")
    assert len(r.stderr.strip().splitlines()) == 1
