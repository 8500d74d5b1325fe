"""KillTestRunner and KillTestSingleton (virtual objects).

``startCallTree`` calls ``recursiveCall``, which parks an awakeable in AwakeableHolder
(by a one-way send), waits for it, then calls itself on the same key, where the second
call queues forever behind the first. Killing the root must kill the whole tree.
"""

from __future__ import annotations

import restate
from restate import ObjectContext

from ._json import encode

kill_test_runner = restate.VirtualObject("KillTestRunner")
kill_test_singleton = restate.VirtualObject("KillTestSingleton")


@kill_test_runner.handler(name="startCallTree")
async def start_call_tree(ctx: ObjectContext) -> None:
    await ctx.generic_call("KillTestSingleton", "recursiveCall", b"", key=ctx.key())


@kill_test_singleton.handler(name="recursiveCall")
async def recursive_call(ctx: ObjectContext) -> None:
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    ctx.generic_send("AwakeableHolder", "hold", encode(awakeable_id), key=ctx.key())
    await awakeable
    await ctx.generic_call("KillTestSingleton", "recursiveCall", b"", key=ctx.key())


@kill_test_singleton.handler(name="isUnlocked")
async def is_unlocked(ctx: ObjectContext) -> None:
    return None
