"""NonDeterministic (virtual object): handlers that issue different commands on replay.

A process-global counter per key decides the branch: odd invocations (attempts) take
the "left" branch, even ones the other, so a replay after suspension mismatches the journal.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta

import restate
from restate import ObjectContext

from ._json import encode

non_deterministic = restate.VirtualObject("NonDeterministic")

_lock = threading.Lock()
_calls: dict[str, int] = defaultdict(int)


def _do_left(key: str) -> bool:
    with _lock:
        _calls[key] += 1
        return _calls[key] % 2 == 1


async def _finish(ctx: ObjectContext) -> None:
    await ctx.sleep(timedelta(milliseconds=100))
    ctx.generic_send("Counter", "add", encode(1), key=ctx.key())


@non_deterministic.handler(name="eitherSleepOrCall")
async def either_sleep_or_call(ctx: ObjectContext) -> None:
    if _do_left(ctx.key()):
        await ctx.sleep(timedelta(milliseconds=100))
    else:
        await ctx.generic_call("Counter", "get", b"", key="abc")
    await _finish(ctx)


@non_deterministic.handler(name="callDifferentMethod")
async def call_different_method(ctx: ObjectContext) -> None:
    if _do_left(ctx.key()):
        await ctx.generic_call("Counter", "get", b"", key="abc")
    else:
        await ctx.generic_call("Counter", "reset", b"", key="abc")
    await _finish(ctx)


@non_deterministic.handler(name="backgroundInvokeWithDifferentTargets")
async def background_invoke_with_different_targets(ctx: ObjectContext) -> None:
    if _do_left(ctx.key()):
        ctx.generic_send("Counter", "get", b"", key="abc")
    else:
        ctx.generic_send("Counter", "reset", b"", key="abc")
    await _finish(ctx)


@non_deterministic.handler(name="setDifferentKey")
async def set_different_key(ctx: ObjectContext) -> None:
    if _do_left(ctx.key()):
        ctx.set("a", "my-state")
    else:
        ctx.set("b", "my-state")
    await _finish(ctx)
