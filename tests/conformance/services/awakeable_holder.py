"""AwakeableHolder (virtual object): keeps one awakeable id and resolves it on demand."""

from __future__ import annotations

import restate
from restate import ObjectContext, TerminalError

awakeable_holder = restate.VirtualObject("AwakeableHolder")


@awakeable_holder.handler()
async def hold(ctx: ObjectContext, awakeable_id: str) -> None:
    ctx.set("id", awakeable_id)


@awakeable_holder.handler(name="hasAwakeable")
async def has_awakeable(ctx: ObjectContext) -> bool:
    return (await ctx.get("id", type_hint=str)) is not None


@awakeable_holder.handler()
async def unlock(ctx: ObjectContext, payload: str) -> None:
    awakeable_id = await ctx.get("id", type_hint=str)
    if awakeable_id is None:
        raise TerminalError("No awakeable registered")
    ctx.resolve_awakeable(awakeable_id, payload)
