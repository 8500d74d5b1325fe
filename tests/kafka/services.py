"""restate-sdk services the Kafka subscription tests subscribe: ``hypercorn tests.kafka.services:app``.

* ``KafkaLog`` (virtual object): ``append`` (exclusive) appends its JSON input to the key's
  ``seen`` list, keeping the headers and raw input of each call in ``calls``; ``seen`` and
  ``calls`` (shared) read them back. Records whose input has ``"fail": N`` fail their first
  N attempts (counted in this process), so a test can watch a retried record hold back the
  later records of its key; ``"sleep_ms": N`` sleeps (durably) first.
* ``KafkaRaw`` (virtual object): ``take`` accepts any bytes (BytesSerde), counts calls.
* ``KafkaSignup`` (workflow): ``run`` stores its input; ``get`` reads it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate
from restate import ObjectContext, ObjectSharedContext, WorkflowContext, WorkflowSharedContext
from restate.retry_policy import InvocationRetryPolicy
from restate.serde import BytesSerde

RETRY = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=timedelta(milliseconds=500),
    max_attempts=100_000,
)

log = restate.VirtualObject("KafkaLog")
_failures: dict[tuple[str, Any], int] = {}


@log.handler(invocation_retry_policy=RETRY)
async def append(ctx: ObjectContext, value: dict) -> int:
    fail = int(value.get("fail", 0))
    if fail:
        mark = (ctx.key(), value.get("seq"))
        done = _failures.get(mark, 0)
        if done < fail:
            _failures[mark] = done + 1
            raise RuntimeError(f"transient failure {done + 1} of {mark}")
    if value.get("sleep_ms"):
        await ctx.sleep(timedelta(milliseconds=int(value["sleep_ms"])))
    seen = await ctx.get("seen", type_hint=list) or []
    seen.append(value.get("seq"))
    ctx.set("seen", seen)
    calls = await ctx.get("calls", type_hint=list) or []
    calls.append({"headers": dict(ctx.request().headers), "seq": value.get("seq")})
    ctx.set("calls", calls)
    return len(seen)


@log.handler(kind="shared")
async def seen(ctx: ObjectSharedContext) -> list:
    return await ctx.get("seen", type_hint=list) or []


@log.handler(kind="shared")
async def calls(ctx: ObjectSharedContext) -> list:
    return await ctx.get("calls", type_hint=list) or []


raw = restate.VirtualObject("KafkaRaw")


@raw.handler(input_serde=BytesSerde(), invocation_retry_policy=RETRY)
async def take(ctx: ObjectContext, value: bytes) -> int:
    n = (await ctx.get("n", type_hint=int) or 0) + 1
    ctx.set("n", n)
    ctx.set("last", value.decode("utf-8", "replace"))
    return n


@raw.handler(kind="shared")
async def count(ctx: ObjectSharedContext) -> int:
    return await ctx.get("n", type_hint=int) or 0


signup = restate.Workflow("KafkaSignup")


@signup.main(invocation_retry_policy=RETRY)
async def run(ctx: WorkflowContext, value: dict) -> dict:
    ctx.set("input", value)
    return value


@signup.handler(name="get")
async def get(ctx: WorkflowSharedContext) -> Any:
    return await ctx.get("input", type_hint=dict)


app = restate.app(services=[log, raw, signup])
