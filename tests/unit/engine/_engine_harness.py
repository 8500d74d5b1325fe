"""Drive the engine without sockets: a fake schema, a recording invoker, message helpers.

The engine runs for real (real `SqliteStore` in a temp dir, real group commit on the test's
event loop); only the two things it talks to are replaced: the schema registry (a few
hard-coded services) and the invoker (which records the attempts it is asked to start).
SDK messages are fed with `Engine.on_frame`, exactly as the real invoker does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from durably.engine.attempt import Attempt
from durably.engine.engine import DeploymentInfo, Engine, HandlerOptions, Submitted, TargetError
from durably.engine.model import Result, Target
from durably.engine.retry import RetryPolicy
from durably.protocol.framing import FrameDecoder
from durably.protocol.messages import MessageType, decode_message, message_type_of, pb
from durably.storage.sqlite import SqliteStore

T = MessageType
ACK = 0x8000

BIDI = "dp_bidi"
REQUEST_RESPONSE = "dp_rr"

# retries fast enough for unit tests, never exhausted unless a test says so
FAST_RETRY = RetryPolicy(initial_interval_ms=10, factor=1.0, max_interval_ms=10, max_attempts=None)

# service -> (service type, {handler: handler type}, deployment id)
SERVICES: dict[str, tuple[str, dict[str, str | None], str]] = {
    "Greeter": ("service", {"greet": None, "other": None}, BIDI),
    "Counter": ("virtual_object", {"add": "exclusive", "reset": "exclusive", "get": "shared"}, BIDI),
    "LazyCounter": ("virtual_object", {"add": "exclusive"}, BIDI),
    "Wf": ("workflow", {"run": "workflow", "signal": "shared", "peek": "shared"}, BIDI),
    "RrService": ("service", {"run": None}, REQUEST_RESPONSE),
}

DEPLOYMENTS = {
    BIDI: DeploymentInfo(
        id=BIDI,
        uri="http://bidi.invalid:9080",
        use_http_11=False,
        bidi=True,
        additional_headers={},
        max_protocol_version=7,
        min_protocol_version=5,
    ),
    REQUEST_RESPONSE: DeploymentInfo(
        id=REQUEST_RESPONSE,
        uri="http://rr.invalid:9080",
        use_http_11=True,
        bidi=False,
        additional_headers={},
        max_protocol_version=7,
        min_protocol_version=5,
    ),
}


class FakeSchema:
    """A registry with the services above; per-handler options can be overridden by tests."""

    def __init__(self) -> None:
        self.overrides: dict[tuple[str, str], dict[str, Any]] = {}
        # services registered by a test (e.g. after an invocation already tried to call them)
        self.services: dict[str, tuple[str, dict[str, str | None], str]] = dict(SERVICES)

    def override(self, service: str, handler: str, **changes: Any) -> None:
        self.overrides.setdefault((service, handler), {}).update(changes)

    def register(self, name: str, ty: str, handlers: dict[str, str | None]) -> None:
        self.services[name] = (ty, handlers, BIDI)

    def service_ty(self, service: str) -> str | None:
        entry = self.services.get(service)
        return None if entry is None else entry[0]

    def target(self, service: str, handler: str, key: str | None) -> tuple[Target, HandlerOptions]:
        entry = self.services.get(service)
        if entry is None:
            raise TargetError(404, f"service '{service}' not found")
        ty, handlers, deployment_id = entry
        if handler not in handlers:
            raise TargetError(404, f"handler '{handler}' not found")
        keyed = ty != "service"
        if keyed and key is None:
            raise TargetError(400, f"the service '{service}' needs a key")
        if not keyed and key is not None:
            raise TargetError(400, f"the service '{service}' does not take a key")
        options = HandlerOptions(
            deployment_id=deployment_id,
            lazy_state=service == "LazyCounter",
            retry=FAST_RETRY,
        )
        changes = self.overrides.get((service, handler))
        if changes:
            options = replace(options, **changes)
        return Target(service, handler, key, ty, handlers[handler]), options

    def deployment(self, deployment_id: str) -> DeploymentInfo | None:
        return DEPLOYMENTS.get(deployment_id)


class RecordingInvoker:
    """Stands in for the invoker: remembers every attempt the engine starts."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.aborted: list[Attempt] = []

    def start(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        attempt._abort = lambda: self.aborted.append(attempt)


def frames(data: bytes, version: int) -> list[tuple[int, Message]]:
    return [
        (f.msg_type, decode_message(f.msg_type, f.body, version))
        for f in FrameDecoder().feed(data)
    ]


def start_of(attempt: Attempt) -> tuple[pb.StartMessage, list[tuple[int, Message]]]:
    """The Start message and the replayed journal an attempt begins with."""
    decoded = frames(attempt.initial, attempt.protocol_version)
    assert decoded, "an attempt always starts with Start"
    t, start = decoded[0]
    assert t == T.START
    assert isinstance(start, pb.StartMessage)
    journal = decoded[1:]
    assert start.known_entries == len(journal)
    return start, journal


def input_of(attempt: Attempt) -> bytes:
    _, journal = start_of(attempt)
    t, msg = journal[0]
    assert t == T.INPUT_COMMAND
    assert isinstance(msg, pb.InputCommandMessage)
    return msg.value.content


class Harness:
    def __init__(self, data_dir: Path, *, enable_protocol_v7: bool = False) -> None:
        self.data_dir = data_dir
        self.enable_protocol_v7 = enable_protocol_v7
        self.schema = FakeSchema()
        self.store: SqliteStore
        self.engine: Engine
        self.invoker: RecordingInvoker
        self._open()

    def _open(self) -> None:
        self.store = SqliteStore(self.data_dir)
        self.engine = Engine(self.store, self.schema, enable_protocol_v7=self.enable_protocol_v7)
        self.invoker = RecordingInvoker()
        self.engine.invoker = self.invoker
        self.engine.recover()

    async def restart(self) -> None:
        """Stop this engine (as a crash would: no completion), open a new one on the same data."""
        await self.settle()
        self.engine.shutdown()
        self.store.close()
        self._open()
        await self.settle()

    def close(self) -> None:
        self.engine.shutdown()
        self.store.close()

    # -- driving -------------------------------------------------------------------------

    def submit(
        self,
        service: str,
        handler: str,
        key: str | None = None,
        body: bytes = b"",
        *,
        headers: list[tuple[str, str]] | None = None,
        idempotency_key: str | None = None,
        delay_ms: int | None = None,
    ) -> Submitted:
        """What the ingress does for a call or a send."""
        target, options = self.schema.target(service, handler, key)
        execution_time = int(time.time() * 1000) + delay_ms if delay_ms else None
        return self.engine.create(
            target,
            options,
            body,
            headers or [],
            idempotency_key=idempotency_key,
            execution_time=execution_time,
        )

    async def settle(self) -> None:
        """Let the engine commit and run its effects (twice: effects may cause more work)."""
        for _ in range(2):
            await self.engine.committed()
            await asyncio.sleep(0)

    def send(self, attempt: Attempt, msg: Message, *, flags: int = 0, msg_type: int | None = None) -> None:
        t = message_type_of(msg) if msg_type is None else msg_type
        self.engine.on_frame(attempt, t, flags, msg.SerializeToString())

    def closed(self, attempt: Attempt, error: str | None = None) -> None:
        """The invoker saw the exchange end (after End/Suspension/Error, or a broken stream)."""
        self.engine.on_attempt_closed(attempt, error)

    async def output(self, attempt: Attempt, value: bytes) -> None:
        self.send(attempt, pb.OutputCommandMessage(value=pb.Value(content=value)))
        self.send(attempt, pb.EndMessage())
        self.closed(attempt)
        await self.settle()

    async def fail(self, attempt: Attempt, code: int, message: str) -> None:
        self.send(attempt, pb.OutputCommandMessage(failure=pb.Failure(code=code, message=message)))
        self.send(attempt, pb.EndMessage())
        self.closed(attempt)
        await self.settle()

    async def suspend(
        self,
        attempt: Attempt,
        completions: list[int] = (),  # type: ignore[assignment]
        signals: list[int] = (),  # type: ignore[assignment]
    ) -> None:
        if attempt.protocol_version >= 7:
            msg: Message = pb.SuspensionMessage(
                awaiting_on=pb.Future(
                    waiting_completions=list(completions), waiting_signals=list(signals)
                )
            )
        else:
            msg = pb.SuspensionMessageV6(
                waiting_completions=list(completions), waiting_signals=list(signals)
            )
        self.engine.on_frame(attempt, T.SUSPENSION, 0, msg.SerializeToString())
        self.closed(attempt)
        await self.settle()

    # -- observing -----------------------------------------------------------------------

    def attempts_of(self, invocation_id: str) -> list[Attempt]:
        return [a for a in self.invoker.attempts if a.invocation_id == invocation_id]

    def attempt(self, invocation_id: str) -> Attempt:
        """The latest attempt of an invocation (fails if none was started)."""
        found = self.attempts_of(invocation_id)
        assert found, f"no attempt was started for {invocation_id}"
        return found[-1]

    def pushed(self, attempt: Attempt) -> list[tuple[int, Message]]:
        """Frames pushed to a (bidi) attempt since the last call."""
        return frames(attempt.take_outbox(), attempt.protocol_version)

    def status(self, invocation_id: str) -> str | None:
        row = self.store.get_invocation(invocation_id)
        return None if row is None else row.status

    async def result(self, invocation_id: str, timeout: float = 2.0) -> Result:
        return await asyncio.wait_for(self.engine.wait_result(invocation_id), timeout)

    async def until(self, cond: Callable[[], object], timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.005)


def journal_types(h: Harness, invocation_id: str) -> list[int]:
    return [t for t, _ in h.store.load_journal(invocation_id)]


def notification_msg(t: int, msg: Message) -> pb.NotificationTemplate:
    """Read any notification through the shared template."""
    return pb.NotificationTemplate.FromString(msg.SerializeToString())


__all__ = [
    "ACK",
    "BIDI",
    "FAST_RETRY",
    "Harness",
    "REQUEST_RESPONSE",
    "T",
    "input_of",
    "journal_types",
    "notification_msg",
    "pb",
    "start_of",
]
