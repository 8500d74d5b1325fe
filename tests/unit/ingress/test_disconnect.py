"""A caller that hangs up while waiting for a result leaves no waiter behind."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from _engine_harness import Harness  # noqa: E402

from durably.ingress.app import IngressApp  # noqa: E402


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [(b"content-type", b"application/json")],
    }


async def test_disconnect_drops_the_wait_but_not_the_invocation(tmp_path: Path) -> None:
    h = Harness(tmp_path / "data")
    try:
        app = IngressApp(h.engine)
        hang_up = asyncio.Event()
        messages = [{"type": "http.request", "body": b"1", "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        task = asyncio.ensure_future(app(_scope("POST", "/Counter/k/add"), receive, send))
        await h.settle()
        (inv_id,) = list(h.engine.active)
        assert inv_id in h.engine._waiters
        hang_up.set()
        await asyncio.wait_for(task, 2)
        assert sent == [] and h.engine._waiters == {}
        # the invocation itself goes on and completes
        await h.output(h.attempt(inv_id), b"2")
        assert (await h.result(inv_id)).value == b"2"
    finally:
        h.close()


async def test_a_request_meeting_the_store_closed_by_the_stop_is_answered_503(
    tmp_path: Path,
) -> None:
    """A request that arrives as the server stops (a storage failure, SIGTERM) and finds its
    store closed gets the stop's 503, not an internal error with a traceback in the log."""
    h = Harness(tmp_path / "data")
    try:
        app = IngressApp(h.engine)
        h.engine.stopping = True
        h.store.close()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"1", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        await asyncio.wait_for(app(_scope("POST", "/Counter/k/add"), receive, send), 10)
        assert sent[0]["status"] == 503, sent
        assert b"stopping" in sent[1]["body"]
    finally:
        h.close()
