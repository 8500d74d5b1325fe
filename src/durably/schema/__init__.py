"""Schema: the registered deployments and services, and how their options combine.

`SchemaRegistry` is the one source the engine, the invoker, the ingress and the admin API
consult; `durations` parses and prints durations the way Restate does.
"""

from durably.schema.durations import (
    DurationError,
    format_duration,
    parse_duration,
    parse_duration_ms,
)
from durably.schema.errors import AdminError
from durably.schema.registry import (
    Deployment,
    HandlerNotFound,
    HandlerOptions,
    RetryPolicy,
    SchemaRegistry,
    Service,
    ServiceDefaults,
    ServiceNotFound,
    TargetNotFound,
)

__all__ = [
    "AdminError",
    "Deployment",
    "DurationError",
    "HandlerNotFound",
    "HandlerOptions",
    "RetryPolicy",
    "SchemaRegistry",
    "Service",
    "ServiceDefaults",
    "ServiceNotFound",
    "TargetNotFound",
    "format_duration",
    "parse_duration",
    "parse_duration_ms",
]
