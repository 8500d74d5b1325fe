"""CancelTestRunner and CancelTestBlockingService (virtual objects).

The runner calls ``CancelTestBlockingService/<key>/block(op)``; the blocking service parks
an awakeable in ``AwakeableHolder/<key>`` and, once that is resolved, blocks forever in the
way ``op`` says. Cancelling the runner must reach the blocked child (409 at its await), and
the runner records that it saw the 409.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import ObjectContext, TerminalError

from ._json import encode

cancel_test_runner = restate.VirtualObject("CancelTestRunner")
cancel_test_blocking_service = restate.VirtualObject("CancelTestBlockingService")

CANCELED_STATE = "state"


@cancel_test_runner.handler(name="startTest")
async def start_test(ctx: ObjectContext, op: str) -> None:
    try:
        await ctx.generic_call("CancelTestBlockingService", "block", encode(op), key=ctx.key())
    except TerminalError as e:
        if e.status_code == 409:
            ctx.set(CANCELED_STATE, True)
        else:
            raise


@cancel_test_runner.handler(name="verifyTest")
async def verify_test(ctx: ObjectContext) -> bool:
    return bool(await ctx.get(CANCELED_STATE, type_hint=bool))


@cancel_test_blocking_service.handler()
async def block(ctx: ObjectContext, op: str) -> None:
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    await ctx.generic_call("AwakeableHolder", "hold", encode(awakeable_id), key=ctx.key())
    await awakeable
    if op == "CALL":
        # Queues behind this very invocation on the same key: never starts.
        await ctx.generic_call("CancelTestBlockingService", "block", encode(op), key=ctx.key())
    elif op == "SLEEP":
        await ctx.sleep(timedelta(days=1024))
    elif op == "AWAKEABLE":
        _, never = ctx.awakeable(type_hint=str)
        await never
    else:
        raise TerminalError(f"unknown operation {op!r}")


@cancel_test_blocking_service.handler(name="isUnlocked")
async def is_unlocked(ctx: ObjectContext) -> None:
    return None
