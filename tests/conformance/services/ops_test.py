"""OpsTestService (service): a handler that always fails with a retryable error.

Not a conformance contract: the operations tests (SQL introspection, CLI) need an
invocation that stays in `backing-off` with a growing retry count and a last failure.
"""

from __future__ import annotations

import restate
from restate import Context

ops_test_service = restate.Service("OpsTestService")


@ops_test_service.handler(name="alwaysFails")
async def always_fails(ctx: Context, value: str) -> str:
    raise ValueError(f"always failing: {value}")
