"""The fault tests' own restate-sdk services: ``hypercorn tests.faults.services:app``.

* ``FaultCounter`` (virtual object): ``add`` returns the new value; ``get``.
* ``FaultWorkflow`` (workflow): ``run`` doubles its input and adds one in two ``ctx.run``
  steps, keeps the result in state; ``get`` reads it.
* ``Effects`` (service): ``process`` runs ``steps`` ``ctx.run`` blocks, each followed by a
  short ``ctx.sleep``. Every execution of a run block appends ``<invocation id> <step>
  <nonce>`` to the file named by ``EFFECTS_FILE`` (outside this process, so it survives a
  SIGKILL) and returns the nonce; the handler returns the nonces the server acknowledged.
  ``nap`` sleeps for the given milliseconds.

Every handler retries quickly (100 ms x2 up to 1 s), so a test that kills this process
many times is not slowed down by Restate's default backoff of up to a minute.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta

import restate
from restate import ObjectContext, WorkflowContext, WorkflowSharedContext
from restate.retry_policy import InvocationRetryPolicy

RETRY = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=1),
    max_attempts=100_000,
)

counter = restate.VirtualObject("FaultCounter")


@counter.handler(invocation_retry_policy=RETRY)
async def add(ctx: ObjectContext, value: int) -> int:
    new = (await ctx.get("n", type_hint=int) or 0) + value
    ctx.set("n", new)
    return new


@counter.handler(invocation_retry_policy=RETRY)
async def get(ctx: ObjectContext) -> int:
    return await ctx.get("n", type_hint=int) or 0


workflow = restate.Workflow("FaultWorkflow")


@workflow.main(invocation_retry_policy=RETRY)
async def run(ctx: WorkflowContext, value: int) -> int:
    doubled = await ctx.run_typed("double", lambda: value * 2)
    result = await ctx.run_typed("plus-one", lambda: doubled + 1)
    ctx.set("result", result)
    return result


@workflow.handler(name="get")
async def get_result(ctx: WorkflowSharedContext) -> int | None:
    return await ctx.get("result", type_hint=int)


effects = restate.Service("Effects")

SLEEP = timedelta(milliseconds=int(os.environ.get("EFFECTS_SLEEP_MS", "300")))


def _record(line: str) -> None:
    path = os.environ["EFFECTS_FILE"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@effects.handler(invocation_retry_policy=RETRY)
async def process(ctx: restate.Context, steps: int) -> list[str]:
    inv_id = ctx.request().id
    nonces: list[str] = []
    for step in range(steps):

        async def effect(step: int = step) -> str:
            # some time on both sides of the effect, so that kills land inside the block
            await asyncio.sleep(0.05)
            nonce = uuid.uuid4().hex
            _record(f"{inv_id} {step} {nonce}\n")
            await asyncio.sleep(0.05)
            return nonce

        nonces.append(await ctx.run_typed(f"step-{step}", effect))
        await ctx.sleep(SLEEP)
    return nonces


@effects.handler(invocation_retry_policy=RETRY)
async def nap(ctx: restate.Context, millis: int) -> int:
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


app = restate.app(services=[counter, workflow, effects])
