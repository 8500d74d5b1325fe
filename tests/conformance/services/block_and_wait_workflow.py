"""BlockAndWaitWorkflow (workflow): run blocks on a durable promise resolved by ``unblock``."""

from __future__ import annotations

import restate
from restate import TerminalError, WorkflowContext, WorkflowSharedContext

block_and_wait_workflow = restate.Workflow("BlockAndWaitWorkflow")

PROMISE = "durable-promise"
STATE = "my-state"


@block_and_wait_workflow.main()
async def run(ctx: WorkflowContext, value: str) -> str:
    ctx.set(STATE, value)
    output = await ctx.promise(PROMISE, type_hint=str).value()
    peeked = await ctx.promise(PROMISE, type_hint=str).peek()
    if peeked is None:
        raise TerminalError("Durable promise should be completed")
    return output


@block_and_wait_workflow.handler()
async def unblock(ctx: WorkflowSharedContext, output: str) -> None:
    await ctx.promise(PROMISE, type_hint=str).resolve(output)


@block_and_wait_workflow.handler(name="getState")
async def get_state(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get(STATE, type_hint=str)
