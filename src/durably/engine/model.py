"""The engine's vocabulary: targets, results, and an invocation while it is active."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from durably.ids import InvocationId
from durably.storage.base import InvocationRow

if TYPE_CHECKING:
    from durably.engine.attempt import Attempt


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    handler: str
    key: str | None
    service_ty: str  # service | virtual_object | workflow
    handler_ty: str | None  # exclusive | shared | workflow | None

    @property
    def is_keyed(self) -> bool:
        return self.service_ty != "service"

    @property
    def takes_lock(self) -> bool:
        """Exclusive handlers of a virtual object run one at a time per key."""
        return self.service_ty == "virtual_object" and self.handler_ty != "shared"

    @property
    def is_workflow_run(self) -> bool:
        return self.service_ty == "workflow" and self.handler_ty == "workflow"

    def describe(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str
    metadata: tuple[tuple[str, str], ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of an invocation: a value (raw bytes) or a terminal failure."""

    value: bytes | None = None
    failure: Failure | None = None

    def encode(self) -> bytes:
        if self.failure is None:
            return b"V" + (self.value or b"")
        f = self.failure
        return b"F" + orjson.dumps(
            {"code": f.code, "message": f.message, "metadata": list(f.metadata)}
        )

    @staticmethod
    def decode(data: bytes) -> Result:
        if data[:1] == b"V":
            return Result(value=bytes(data[1:]))
        d = orjson.loads(data[1:])
        return Result(
            failure=Failure(
                int(d["code"]), str(d["message"]), tuple((str(k), str(v)) for k, v in d["metadata"])
            )
        )


CANCELED = Failure(409, "canceled")
KILLED = Failure(409, "killed")
WORKFLOW_ALREADY_INVOKED = Failure(409, "the workflow method was already invoked")
NOT_FOUND = Failure(404, "not found")


@dataclass(eq=False, slots=True)
class ActiveInvocation:
    """An invocation that has not completed yet, held in memory.

    Its journal is held while it may run (an attempt is open or about to be); a suspended,
    paused or scheduled invocation leaves it in the store (`journal is None`) and loads it
    again when it runs, so that parked invocations cost little memory. What a suspended
    invocation waits for is `row.waiting` (see `waiting_of`).
    """

    row: InvocationRow
    target: Target
    journal: list[tuple[int, bytes]] | None = None
    attempt: Attempt | None = None
    attempt_seq: int = 0
    # consecutive failed attempts since the journal last grew, and when it last grew
    retries_since_entry: int = 0
    last_entry_at: int = 0
    # completion ids of the notifications in the held journal (signals need no such
    # record); None when none is stored, or while the journal is left in the store
    completion_ids: set[int] | None = None
    retry_handle: object | None = None
    # ids of its stored timers (a tuple of ints: nothing for the garbage collector to scan)
    timer_ids: tuple[int, ...] = ()

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def id_bytes(self) -> bytes:
        return InvocationId.parse(self.row.id).to_bytes()


Waiting = tuple[frozenset[int], frozenset[int], frozenset[str]]


def encode_waiting(waiting: Waiting) -> str:
    return orjson.dumps([sorted(waiting[0]), sorted(waiting[1]), sorted(waiting[2])]).decode()


def waiting_of(row: InvocationRow) -> Waiting | None:
    """What a suspended invocation waits for: completion ids, signal ids, signal names."""
    if row.waiting is None:
        return None
    c, s, n = orjson.loads(row.waiting)
    return frozenset(c), frozenset(s), frozenset(n)
