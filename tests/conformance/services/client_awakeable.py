"""ClientAwakeable (virtual object): waits on an awakeable whose id callers can read, so
that tests can resolve or reject it from outside through the ingress client."""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext

client_awakeable = restate.VirtualObject("ClientAwakeable")

ID_STATE = "id"


@client_awakeable.handler()
async def wait(ctx: ObjectContext) -> str:
    awakeable_id, value = ctx.awakeable(type_hint=str)
    ctx.set(ID_STATE, awakeable_id)
    return await value


@client_awakeable.handler(name="awakeableId", kind="shared")
async def awakeable_id(ctx: ObjectSharedContext) -> str | None:
    return await ctx.get(ID_STATE, type_hint=str)
