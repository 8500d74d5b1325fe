"""Services of the seeded random workload: ``hypercorn tests.abuse.interpreter:app``.

``Interp`` (virtual object) runs a *program*, a JSON list of operations, on its key:

* ``["inc", n]``: add ``n`` to the key's counter (state);
* ``["run", v]``: ``ctx.run`` that returns ``v``; adds ``v`` to the result;
* ``["sleep", ms]``: a durable sleep;
* ``["call", key, program]``: call ``Interp/{key}/run`` with ``program``, add its result;
* ``["send", key, program, delay_ms]``: one-way send of ``program`` to ``key``;
* ``["cancelled_send", key, program]``: a send delayed by an hour, then cancelled: it
  must never run;
* ``["awakeable", v]``: an awakeable that ``Resolver/resolve`` completes with ``v``; adds
  ``v`` to the result.

``run`` returns the result; ``get`` (shared) returns the counter. ``workload.py`` generates
programs and computes what they must give without durably.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate
from restate import ObjectContext, ObjectSharedContext

interp = restate.VirtualObject("Interp")
resolver = restate.Service("Resolver")


@interp.handler()
async def run(ctx: ObjectContext, program: list[Any]) -> int:
    result = 0
    for op in program:
        kind = op[0]
        if kind == "inc":
            ctx.set("n", (await ctx.get("n", type_hint=int) or 0) + op[1])
        elif kind == "run":
            value = op[1]

            async def step(value: int = value) -> int:
                return value

            result += await ctx.run_typed("run", step)
        elif kind == "sleep":
            await ctx.sleep(timedelta(milliseconds=op[1]))
        elif kind == "call":
            result += await ctx.object_call(run, key=op[1], arg=op[2])
        elif kind == "send":
            ctx.object_send(run, key=op[1], arg=op[2],
                            send_delay=timedelta(milliseconds=op[3]) if op[3] else None)
        elif kind == "cancelled_send":
            handle = ctx.object_send(run, key=op[1], arg=op[2], send_delay=timedelta(hours=1))
            ctx.cancel_invocation(await handle.invocation_id())
        elif kind == "awakeable":
            name, future = ctx.awakeable(type_hint=int)
            ctx.service_send(resolve, arg=[name, op[1]])
            result += await future
    return result


@interp.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return await ctx.get("n", type_hint=int) or 0


@resolver.handler()
async def resolve(ctx: restate.Context, request: list[Any]) -> None:
    ctx.resolve_awakeable(request[0], request[1])


app = restate.app(services=[interp, resolver])
