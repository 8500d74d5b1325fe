"""ListObject and MapObject (virtual objects): list state and one-state-key-per-entry maps."""

from __future__ import annotations

import restate
from restate import ObjectContext

list_object = restate.VirtualObject("ListObject")
map_object = restate.VirtualObject("MapObject")

LIST_KEY = "list"


@list_object.handler()
async def append(ctx: ObjectContext, value: str) -> None:
    items = await ctx.get(LIST_KEY, type_hint=list) or []
    items.append(value)
    ctx.set(LIST_KEY, items)


@list_object.handler(name="get")
async def list_get(ctx: ObjectContext) -> list:
    return await ctx.get(LIST_KEY, type_hint=list) or []


@list_object.handler()
async def clear(ctx: ObjectContext) -> list:
    items = await ctx.get(LIST_KEY, type_hint=list) or []
    ctx.clear(LIST_KEY)
    return items


@map_object.handler(name="set")
async def map_set(ctx: ObjectContext, entry: dict) -> None:
    ctx.set(entry["key"], entry["value"])


@map_object.handler(name="get")
async def map_get(ctx: ObjectContext, key: str) -> str:
    return await ctx.get(key, type_hint=str) or ""


@map_object.handler(name="clearAll")
async def clear_all(ctx: ObjectContext) -> list:
    entries = []
    for key in await ctx.state_keys():
        value = await ctx.get(key, type_hint=str)
        entries.append({"key": key, "value": value})
        ctx.clear(key)
    return entries
