"""Failing (virtual object): terminal errors (with metadata), retries, ctx.run retry policies.

Counters are process globals on purpose (the contract says so); run hypercorn with one
worker so that retries land in the same process.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import restate
from restate import ObjectContext, RunOptions, TerminalError

from ._json import encode

failing = restate.VirtualObject("Failing")

_lock = threading.Lock()
_eventual_success_calls = 0
_eventual_success_side_effects = 0
_eventual_failure_side_effects = 0


def _terminal(req: dict) -> TerminalError:
    return TerminalError(req["errorMessage"], metadata=req.get("metadata") or None)


@failing.handler(name="terminallyFailingCall")
async def terminally_failing_call(ctx: ObjectContext, req: dict) -> None:
    raise _terminal(req)


@failing.handler(name="callTerminallyFailingCall")
async def call_terminally_failing_call(ctx: ObjectContext, req: dict) -> str:
    await ctx.generic_call("Failing", "terminallyFailingCall", encode(req), key="random-583e1bf2")
    raise TerminalError("This should be unreachable")


@failing.handler(name="failingCallWithEventualSuccess")
async def failing_call_with_eventual_success(ctx: ObjectContext) -> int:
    global _eventual_success_calls
    with _lock:
        _eventual_success_calls += 1
        attempt = _eventual_success_calls
        if attempt >= 4:
            _eventual_success_calls = 0
    if attempt >= 4:
        return 4
    raise ValueError(f"Failed at attempt: {attempt}")


@failing.handler(name="terminallyFailingSideEffect")
async def terminally_failing_side_effect(ctx: ObjectContext, req: dict) -> None:
    def side_effect() -> None:
        raise _terminal(req)

    await ctx.run_typed("sideEffect", side_effect)
    raise ValueError("Should not be reached")


@failing.handler(name="sideEffectSucceedsAfterGivenAttempts")
async def side_effect_succeeds_after_given_attempts(ctx: ObjectContext, min_attempts: int) -> int:
    def side_effect() -> int:
        global _eventual_success_side_effects
        with _lock:
            _eventual_success_side_effects += 1
            count = _eventual_success_side_effects
        if count >= min_attempts:
            return count
        raise ValueError(f"Failed at attempt: {count}")

    options: RunOptions[int] = RunOptions(
        max_attempts=min_attempts + 1,
        initial_retry_interval=timedelta(milliseconds=1),
        retry_interval_factor=1.0,
    )
    return await ctx.run_typed("failing_side_effect", side_effect, options)


@failing.handler(name="sideEffectFailsAfterGivenAttempts")
async def side_effect_fails_after_given_attempts(ctx: ObjectContext, retry_policy_max_retry_count: int) -> int:
    def side_effect() -> int:
        global _eventual_failure_side_effects
        with _lock:
            _eventual_failure_side_effects += 1
            count = _eventual_failure_side_effects
        raise ValueError(f"Failed at attempt: {count}")

    options: RunOptions[int] = RunOptions(
        max_attempts=retry_policy_max_retry_count,
        initial_retry_interval=timedelta(milliseconds=1),
        retry_interval_factor=1.0,
    )
    try:
        await ctx.run_typed("failing_side_effect", side_effect, options)
    except TerminalError:
        return _eventual_failure_side_effects
    raise TerminalError("Expecting the side effect to fail!")
