"""The checker's restate-sdk services (`hypercorn tests.cluster.checker.services:app`).

Every effect the checker looks for is a *token* appended to a virtual object's state:

- `CheckSet/{key}/add(token)`: exclusive; appends `{t: token, s: seq, a: start, b: end}`
  to the key's list, where `seq` is the list's length before (returned to the caller) and
  `a`/`b` are wall-clock times taken in journaled `ctx.run`s at the start and the end of
  the handler. Two runs of one key at once would read the same list (one append lost, or
  overlapping `a..b` intervals); a doubled invocation shows its token twice.
- `CheckRelay/{key}/forward({target, token, delay_ms})`: exclusive; calls `CheckSet`'s
  `add` on another key (another partition, usually) or, with `delay_ms`, sends it there
  delayed, then appends its own entry to its own list (with the callee's `seq`, or the
  time just before the delayed send).
- `CheckFlow/{id}/run({key, token, ms})`: a workflow that takes the time, sleeps `ms`
  (a durable timer), takes the time again and calls `CheckSet/{key}/add(token)`; returns
  both times so the checker sees that the timer did not fire early.

Every execution of a `ctx.run` closure is also appended to the file `CHECKER_RUNLOG` (one
line per execution: name and token), so repetitions of side effects (allowed: at least
once, as in Restate) are counted.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import restate
from restate import ObjectContext, WorkflowContext

_RUNLOG = os.environ.get("CHECKER_RUNLOG")


def _ran(name: str, token: str) -> float:
    """The body of every `ctx.run`: the time, and a line in the run log."""
    now = time.time()
    if _RUNLOG:
        with open(_RUNLOG, "a", encoding="utf-8") as f:
            f.write(f"{name}\t{token}\n")
    return now


async def _append(ctx: ObjectContext, token: str, extra: dict[str, Any]) -> int:
    start = await ctx.run_typed("start", lambda: _ran("start", token))
    entries: list[dict[str, Any]] = await ctx.get("entries", type_hint=list) or []
    seq = len(entries)
    end = await ctx.run_typed("end", lambda: _ran("end", token))
    entries.append({"t": token, "s": seq, "a": start, "b": end, **extra})
    ctx.set("entries", entries)
    return seq


check_set = restate.VirtualObject("CheckSet")


@check_set.handler()
async def add(ctx: ObjectContext, token: str) -> int:
    return await _append(ctx, token, {})


@check_set.handler(kind="shared")
async def entries(ctx: restate.ObjectSharedContext) -> list:
    return await ctx.get("entries", type_hint=list) or []


relay = restate.VirtualObject("CheckRelay")


@relay.handler()
async def forward(ctx: ObjectContext, req: dict) -> int:
    token, target, delay = req["token"], req["target"], int(req.get("delay_ms") or 0)
    if delay:
        # the time before the send: the delayed add must not start before it + delay
        sent = await ctx.run_typed("sent", lambda: _ran("sent", token))
        ctx.object_send(add, key=target, arg=token, send_delay=timedelta(milliseconds=delay))
        return await _append(ctx, token, {"r": -1, "w": sent})
    remote = await ctx.object_call(add, key=target, arg=token)
    return await _append(ctx, token, {"r": remote})


flow = restate.Workflow("CheckFlow")


@flow.main()
async def run(ctx: WorkflowContext, req: dict) -> dict:
    token, ms = req["token"], int(req["ms"])
    slept = await ctx.run_typed("slept", lambda: _ran("slept", token))
    await ctx.sleep(timedelta(milliseconds=ms))
    woke = await ctx.run_typed("woke", lambda: _ran("woke", token))
    seq = await ctx.object_call(add, key=req["key"], arg=token)
    return {"slept": slept, "woke": woke, "seq": seq}


app = restate.app(services=[check_set, relay, flow])
