"""Services for fuzzing the ingress: ``hypercorn tests.abuse.services:app``.

Every handler takes and returns raw bytes (no JSON decoding in the SDK), so whatever body
the fuzzer sends is a valid input and every invocation ends at once: a slow or failing
answer is then durably's doing, never the handler's.

* ``Echo`` (service): ``echo`` returns its input.
* ``Box`` (virtual object): ``put`` stores its input and returns it; ``get`` (shared).
* ``Flow`` (workflow): ``run`` stores its input and returns it; ``get`` (shared).
"""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext, WorkflowContext, WorkflowSharedContext
from restate.serde import BytesSerde

RAW = {"input_serde": BytesSerde(), "output_serde": BytesSerde()}

echo_service = restate.Service("Echo")


@echo_service.handler(**RAW)
async def echo(ctx: restate.Context, value: bytes) -> bytes:
    return value


box = restate.VirtualObject("Box")


@box.handler(**RAW)
async def put(ctx: ObjectContext, value: bytes) -> bytes:
    ctx.set("v", value, serde=BytesSerde())
    return value


@box.handler(kind="shared", output_serde=BytesSerde())
async def get(ctx: ObjectSharedContext) -> bytes:
    return await ctx.get("v", serde=BytesSerde()) or b""


flow = restate.Workflow("Flow")


@flow.main(**RAW)
async def run(ctx: WorkflowContext, value: bytes) -> bytes:
    ctx.set("v", value, serde=BytesSerde())
    return value


@flow.handler(name="get", output_serde=BytesSerde())
async def flow_get(ctx: WorkflowSharedContext) -> bytes:
    return await ctx.get("v", serde=BytesSerde()) or b""


app = restate.app(services=[echo_service, box, flow])
