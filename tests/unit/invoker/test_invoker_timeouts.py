"""The invoker's per-attempt inactivity timer (`_IdleTimeout`): asyncio.timeout semantics."""

from __future__ import annotations

import asyncio

import pytest

from durably.invoker.invoker import _IdleTimeout

pytestmark = pytest.mark.timeout(30)


async def test_expiry_raises_timeout_error() -> None:
    idle = _IdleTimeout()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        with idle.within(0.01):
            await never
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
    idle.close()


async def test_activity_moves_the_deadline_and_the_timer_rearms() -> None:
    idle = _IdleTimeout()
    # each await finishes well before its own deadline, though together they outlast one
    for _ in range(5):
        with idle.within(0.2):
            await asyncio.sleep(0.05)
    # after the awaits, nothing is cancelled later on
    await asyncio.sleep(0.3)
    idle.close()


async def test_a_shorter_deadline_rearms_the_timer_earlier() -> None:
    idle = _IdleTimeout()
    with idle.within(60):
        await asyncio.sleep(0)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        with idle.within(0.01):
            await never
    idle.close()


async def test_usable_again_after_expiry() -> None:
    idle = _IdleTimeout()
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        with idle.within(0.01):
            await loop.create_future()
    with idle.within(5):
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        with idle.within(0.01):
            await loop.create_future()
    idle.close()


async def test_no_deadline() -> None:
    idle = _IdleTimeout()
    with idle.within(None):
        await asyncio.sleep(0.01)
    idle.close()


async def test_outside_cancellation_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def attempt() -> None:
        idle = _IdleTimeout()
        try:
            with idle.within(60):
                started.set()
                await asyncio.get_running_loop().create_future()
        finally:
            idle.close()

    task = asyncio.get_running_loop().create_task(attempt())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_close_cancels_the_pending_timer() -> None:
    idle = _IdleTimeout()
    with idle.within(0.05):
        await asyncio.sleep(0)
    idle.close()
    await asyncio.sleep(0.1)  # the task is not cancelled by a stale timer
