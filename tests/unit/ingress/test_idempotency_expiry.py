"""An idempotent call repeated as its retention ends gets the stored answer, never a hang."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from _engine_harness import Harness  # noqa: E402

from durably.engine.cleanup import sweep_expired  # noqa: E402
from durably.ingress.app import IngressApp  # noqa: E402


async def _call(app: IngressApp, path: str, body: bytes, idem: str) -> list[dict[str, Any]]:
    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"idempotency-key", idem.encode())],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    never = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await app(scope, receive, send)
    return sent


async def test_repeated_call_purged_while_it_waits_for_its_commit(tmp_path: Path) -> None:
    h = Harness(tmp_path / "data")
    try:
        h.schema.override("Counter", "add", idempotency_retention_ms=1)
        app = IngressApp(h.engine)
        first = asyncio.ensure_future(_call(app, "/Counter/k/add", b"1", "ik"))
        await h.until(lambda: h.engine.active)
        (inv_id,) = list(h.engine.active)
        await h.settle()
        await h.output(h.attempt(inv_id), b"2")
        sent = await asyncio.wait_for(first, 2)
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"2"
        await h.until(lambda: h.store.expired_invocations(2**62, 10))

        # The same call again: it finds the completed invocation, then waits for the commit
        # of its step; the cleanup purges the expired invocation during that wait (the
        # interleaving seen under load on PostgreSQL, whose commit wait is a round trip).
        real_committed = h.engine.committed

        def committed_then_swept() -> asyncio.Future[None]:
            fut = real_committed()
            assert sweep_expired(h.engine) == 1
            return fut

        h.engine.committed = committed_then_swept  # type: ignore[method-assign]
        sent = await asyncio.wait_for(_call(app, "/Counter/k/add", b"1", "ik"), 2)
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"2"
        assert h.store.get_invocation(inv_id) is None
        h.engine.committed = real_committed  # type: ignore[method-assign]

        # afterwards the key is new again: the call runs the handler anew
        third = asyncio.ensure_future(_call(app, "/Counter/k/add", b"1", "ik"))
        await h.until(lambda: h.engine.active)
        await h.settle()
        await h.output(h.attempt(inv_id), b"4")
        sent = await asyncio.wait_for(third, 2)
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"4"
    finally:
        h.close()
