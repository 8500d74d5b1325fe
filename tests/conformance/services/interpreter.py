"""VirtualObjectCommandInterpreter (virtual object).

``interpretCommands({"commands": [...]})`` runs the commands in order, appends the result
of each to the ``results`` state list and returns the last result. Commands that await
(``awaitOne``, ``awaitAny``...) take "awaitable commands": ``createAwakeable``, ``sleep``,
``runReturns``, ``runThrowTerminalException``, ``createSignal``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import restate
from restate import ObjectContext, ObjectSharedContext, TerminalError

virtual_object_command_interpreter = restate.VirtualObject("VirtualObjectCommandInterpreter")

RESULTS = "results"


def _awk_state(awakeable_key: str) -> str:
    return f"awk-{awakeable_key}"


@dataclass
class _Awaitable:
    """An SDK future plus how to turn its value into the command result (a string)."""

    future: Any
    convert: Callable[[Any], str]

    async def result(self) -> str:
        return self.convert(await self.future)


def _as_str(value: Any) -> str:
    return "" if value is None else str(value)


def _to_awaitable(ctx: ObjectContext, cmd: dict) -> _Awaitable:
    kind = cmd["type"]
    if kind == "createAwakeable":
        awakeable_id, fut = ctx.awakeable(type_hint=str)
        ctx.set(_awk_state(cmd["awakeableKey"]), awakeable_id)
        return _Awaitable(fut, _as_str)
    if kind == "sleep":
        fut = ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"]))
        return _Awaitable(fut, lambda _: "sleep")
    if kind == "runReturns":
        value = cmd["value"]

        async def returns() -> str:
            await asyncio.sleep(0.001)  # really yield once before completing
            return value

        return _Awaitable(ctx.run_typed("run should return", returns), _as_str)
    if kind == "runThrowTerminalException":
        reason = cmd["reason"]

        async def throws() -> str:
            await asyncio.sleep(0.001)
            raise TerminalError(reason)

        return _Awaitable(ctx.run_typed("run should fail", throws), _as_str)
    if kind == "createSignal":
        return _Awaitable(ctx.signal(cmd["signalName"], type_hint=str), _as_str)
    raise TerminalError(f"unknown awaitable command {kind!r}")


async def _first_completed(items: list[_Awaitable]) -> str:
    done, _ = await restate.wait_completed(*[a.future for a in items])
    # Several may be completed at once: report the first one in command order.
    for a in items:
        if any(a.future is f for f in done):
            return await a.result()
    raise AssertionError("wait_completed returned no completed future")


async def _first_succeeded(items: list[_Awaitable]) -> str:
    by_future = {id(a.future): a for a in items}
    last_error: TerminalError | None = None
    async for fut in restate.as_completed(*[a.future for a in items]):
        try:
            return await by_future[id(fut)].result()
        except TerminalError as e:
            last_error = e
    assert last_error is not None
    raise last_error


async def _all_succeeded(items: list[_Awaitable]) -> str:
    # Fail as soon as any fails (the first failure in completion order).
    async for fut in restate.as_completed(*[a.future for a in items]):
        await fut
    return "|".join([await a.result() for a in items])


async def _all_completed(items: list[_Awaitable]) -> str:
    await restate.gather(*[a.future for a in items])
    parts = []
    for a in items:
        try:
            parts.append("ok:" + await a.result())
        except TerminalError as e:
            parts.append("err:" + e.message)
    return "|".join(parts)


async def _awakeable_or_timeout(ctx: ObjectContext, cmd: dict) -> str:
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    ctx.set(_awk_state(cmd["awakeableKey"]), awakeable_id)
    match await restate.select(awakeable=fut, timeout=ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"]))):
        case ["awakeable", value]:
            return _as_str(value)
        case _:
            raise TerminalError("await-timeout")


async def _resolve_awakeable(ctx, cmd: dict) -> str:
    awakeable_id = await ctx.get(_awk_state(cmd["awakeableKey"]), type_hint=str)
    if awakeable_id is None:
        raise TerminalError("No awakeable registered")
    ctx.resolve_awakeable(awakeable_id, cmd["value"])
    return ""


async def _reject_awakeable(ctx, cmd: dict) -> str:
    awakeable_id = await ctx.get(_awk_state(cmd["awakeableKey"]), type_hint=str)
    if awakeable_id is None:
        raise TerminalError("No awakeable registered")
    ctx.reject_awakeable(awakeable_id, cmd["reason"])
    return ""


async def _interpret(ctx: ObjectContext, cmd: dict) -> str:
    kind = cmd["type"]
    if kind == "awaitOne":
        return await _to_awaitable(ctx, cmd["command"]).result()
    if kind in ("awaitAny", "awaitFirstCompleted"):
        return await _first_completed([_to_awaitable(ctx, c) for c in cmd["commands"]])
    if kind in ("awaitAnySuccessful", "awaitFirstSucceededOrAllFailed"):
        return await _first_succeeded([_to_awaitable(ctx, c) for c in cmd["commands"]])
    if kind == "awaitAllSucceededOrFirstFailed":
        return await _all_succeeded([_to_awaitable(ctx, c) for c in cmd["commands"]])
    if kind == "awaitAllCompleted":
        return await _all_completed([_to_awaitable(ctx, c) for c in cmd["commands"]])
    if kind == "awaitAwakeableOrTimeout":
        return await _awakeable_or_timeout(ctx, cmd)
    if kind == "resolveAwakeable":
        return await _resolve_awakeable(ctx, cmd)
    if kind == "rejectAwakeable":
        return await _reject_awakeable(ctx, cmd)
    if kind == "getEnvVariable":
        name = cmd["envName"]

        def read_env() -> str:
            return os.environ.get(name, "")

        return await ctx.run_typed("get_env", read_env)
    raise TerminalError(f"unknown command {kind!r}")


@virtual_object_command_interpreter.handler(name="interpretCommands")
async def interpret_commands(ctx: ObjectContext, req: dict) -> str:
    result = ""
    for cmd in req["commands"]:
        result = await _interpret(ctx, cmd)
        results = await ctx.get(RESULTS, type_hint=list) or []
        results.append(result)
        ctx.set(RESULTS, results)
    return result


@virtual_object_command_interpreter.handler(name="resolveAwakeable", kind="shared")
async def resolve_awakeable(ctx: ObjectSharedContext, req: dict) -> None:
    await _resolve_awakeable(ctx, req)


@virtual_object_command_interpreter.handler(name="rejectAwakeable", kind="shared")
async def reject_awakeable(ctx: ObjectSharedContext, req: dict) -> None:
    await _reject_awakeable(ctx, req)


@virtual_object_command_interpreter.handler(name="hasAwakeable", kind="shared")
async def has_awakeable(ctx: ObjectSharedContext, awakeable_key: str) -> bool:
    return (await ctx.get(_awk_state(awakeable_key), type_hint=str)) is not None


@virtual_object_command_interpreter.handler(name="getResults", kind="shared")
async def get_results(ctx: ObjectSharedContext) -> list:
    return await ctx.get(RESULTS, type_hint=list) or []
