"""TestUtilsService (service): echo, headers, raw bytes, local side-effect counting,
cancelling invocations and resolving/rejecting named signals of other invocations."""

from __future__ import annotations

import restate
from restate import Context
from restate.serde import BytesSerde

test_utils_service = restate.Service("TestUtilsService")


@test_utils_service.handler()
async def echo(ctx: Context, value: str) -> str:
    return value


@test_utils_service.handler(name="uppercaseEcho")
async def uppercase_echo(ctx: Context, value: str) -> str:
    return value.upper()


@test_utils_service.handler(name="echoHeaders")
async def echo_headers(ctx: Context) -> dict:
    return dict(ctx.request().headers)


@test_utils_service.handler(
    name="rawEcho",
    accept="*/*",
    content_type="application/octet-stream",
    input_serde=BytesSerde(),
    output_serde=BytesSerde(),
)
async def raw_echo(ctx: Context, value: bytes) -> bytes:
    return value


@test_utils_service.handler(name="countExecutedSideEffects")
async def count_executed_side_effects(ctx: Context, increments: int) -> int:
    counter = 0

    def bump() -> None:
        nonlocal counter
        counter += 1

    for _ in range(increments):
        await ctx.run_typed("count", bump)
    return counter


@test_utils_service.handler(name="cancelInvocation")
async def cancel_invocation(ctx: Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


@test_utils_service.handler(name="resolveSignal")
async def resolve_signal(ctx: Context, req: dict) -> None:
    ctx.resolve_signal(req["invocationId"], req["signalName"], req["value"])


@test_utils_service.handler(name="rejectSignal")
async def reject_signal(ctx: Context, req: dict) -> None:
    ctx.reject_signal(req["invocationId"], req["signalName"], req["reason"])
