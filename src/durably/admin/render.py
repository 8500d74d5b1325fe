"""Registry records -> the JSON bodies of Restate's admin API, field for field.

Field order, omitted-when-unset fields and the printed forms (`"1d"`, `"VirtualObject"`,
`"BidiStream"`, `"2026-11-22T02:27:27.595000000Z"`) follow what restate-server 1.7.12 prints.
JSON schemas are printed with sorted keys, as Restate (serde_json without preserve_order)
does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from durably.protocol.discovery import HandlerManifest, InputRules, OutputRules
from durably.schema.durations import format_duration
from durably.schema.registry import Deployment, RetryPolicy, SchemaRegistry, Service

__all__ = [
    "deployment_json",
    "detailed_deployment_json",
    "format_timestamp",
    "handler_json",
    "register_response_json",
    "service_json",
]

_HANDLER_TYPE_NAMES = {"exclusive": "Exclusive", "shared": "Shared", "workflow": "Workflow"}
_PROTOCOL_TYPES = {"bidi": "BidiStream", "request_response": "RequestResponse"}
_RT0021 = "RT0021"


def format_timestamp(ms: int) -> str:
    """Restate's RFC 3339 form: nanosecond digits, `Z`."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}000000Z"


def _sorted_schema(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_schema(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_schema(v) for v in value]
    return value


def _describe(content_type: str | None, schema: Any) -> str:
    if content_type is None:
        return "none"
    if isinstance(schema, dict):
        title = schema.get("title")
        if isinstance(title, str):
            return f"JSON '{title}'"
        ty = schema.get("type")
        if isinstance(ty, str):
            return f"JSON {ty}"
    return content_type


def _input(rules: InputRules, raw: dict[str, Any]) -> tuple[str, tuple[bool, Any]]:
    if not rules.present:
        return "none", (False, None)
    raw_input = raw.get("input") or {}
    has_schema = isinstance(raw_input, dict) and "jsonSchema" in raw_input
    return _describe(rules.content_type, rules.json_schema), (has_schema, rules.json_schema)


def _output(rules: OutputRules, raw: dict[str, Any]) -> tuple[str, tuple[bool, Any]]:
    if rules.content_type is None:
        return "none", (False, None)
    raw_output = raw.get("output") or {}
    has_schema = isinstance(raw_output, dict) and "jsonSchema" in raw_output
    return _describe(rules.content_type, rules.json_schema), (has_schema, rules.json_schema)


def _not_applied(what: str, ms: int) -> dict[str, str]:
    return {
        "code": _RT0021,
        "message": f"The configured inactivity_timeout {format_duration(ms)} will not be applied "
        f"because the {what} is exposed in Request/Response mode.",
    }


def _service_retry(rp: RetryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {
        "initial_interval": format_duration(rp.initial_interval_ms),
        "exponentiation_factor": float(rp.exponentiation_factor),
        "max_attempts": rp.max_attempts,
    }
    if rp.max_interval_ms is not None:
        out["max_interval"] = format_duration(rp.max_interval_ms)
    out["on_max_attempts"] = "Kill" if rp.on_max_attempts == "kill" else "Pause"
    return out


def _handler_retry(h: HandlerManifest) -> dict[str, Any]:
    # Only the handler's own overrides; max_attempts is always printed (null when unset).
    rp = h.retry_policy
    out: dict[str, Any] = {}
    if rp is not None and rp.initial_interval_ms is not None:
        out["initial_interval"] = format_duration(rp.initial_interval_ms)
    if rp is not None and rp.exponentiation_factor is not None:
        out["exponentiation_factor"] = float(rp.exponentiation_factor)
    out["max_attempts"] = rp.max_attempts if rp is not None else None
    if rp is not None and rp.max_interval_ms is not None:
        out["max_interval"] = format_duration(rp.max_interval_ms)
    if rp is not None and rp.on_max_attempts is not None:
        out["on_max_attempts"] = "Kill" if rp.on_max_attempts.upper() == "KILL" else "Pause"
    return out


def handler_json(service: Service, h: HandlerManifest) -> dict[str, Any]:
    """HandlerMetadata."""
    out: dict[str, Any] = {"name": h.name}
    if h.ty is not None:
        out["ty"] = _HANDLER_TYPE_NAMES[h.ty]
    if h.documentation is not None:
        out["documentation"] = h.documentation
    if h.metadata:
        out["metadata"] = dict(h.metadata)
    if h.idempotency_retention_ms is not None:
        out["idempotency_retention"] = format_duration(h.idempotency_retention_ms)
    if h.journal_retention_ms is not None:
        out["journal_retention"] = format_duration(h.journal_retention_ms)
    info = []
    if h.inactivity_timeout_ms is not None:
        if service.request_response:
            info.append(_not_applied("handler", h.inactivity_timeout_ms))
        else:
            out["inactivity_timeout"] = format_duration(h.inactivity_timeout_ms)
    if h.abort_timeout_ms is not None:
        out["abort_timeout"] = format_duration(h.abort_timeout_ms)
    if h.enable_lazy_state is not None:
        out["enable_lazy_state"] = h.enable_lazy_state
    out["public"] = service.handler_public(h)
    in_desc, (in_has, in_schema) = _input(h.input, h.raw)
    out_desc, (out_has, out_schema) = _output(h.output, h.raw)
    out["input_description"] = in_desc
    out["output_description"] = out_desc
    if in_has:
        out["input_json_schema"] = _sorted_schema(in_schema)
    if out_has:
        out["output_json_schema"] = _sorted_schema(out_schema)
    out["retry_policy"] = _handler_retry(h)
    if info:
        out["info"] = info
    return out


def service_json(service: Service) -> dict[str, Any]:
    """ServiceMetadata."""
    sm = service.manifest
    out: dict[str, Any] = {
        "name": service.name,
        "ty": service.type_name,
        "handlers": [handler_json(service, h) for h in sm.handlers],
    }
    if sm.documentation is not None:
        out["documentation"] = sm.documentation
    if sm.metadata:
        out["metadata"] = dict(sm.metadata)
    out["deployment_id"] = service.deployment_id
    out["revision"] = service.revision
    out["public"] = service.public
    out["idempotency_retention"] = format_duration(service.idempotency_retention_ms)
    if service.ty == "workflow" and service.workflow_completion_retention_ms is not None:
        out["workflow_completion_retention"] = format_duration(
            service.workflow_completion_retention_ms
        )
    out["journal_retention"] = format_duration(service.journal_retention_ms)
    out["inactivity_timeout"] = format_duration(service.inactivity_timeout_ms)
    out["abort_timeout"] = format_duration(service.abort_timeout_ms)
    out["enable_lazy_state"] = service.enable_lazy_state
    out["retry_policy"] = _service_retry(service.retry_policy)
    configured = service.inactivity_timeout_configured_ms
    if configured is None:
        configured = sm.inactivity_timeout_ms
    if service.request_response and configured is not None:
        out["info"] = [_not_applied("service", configured)]
    return out


def _deployment_head(d: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "uri": d.uri,
        "protocol_type": _PROTOCOL_TYPES[d.protocol_mode],
        "http_version": d.http_version,
    }
    if d.additional_headers:
        out["additional_headers"] = dict(d.additional_headers)
    out["created_at"] = format_timestamp(d.created_at_ms)
    out["min_protocol_version"] = d.min_protocol_version
    out["max_protocol_version"] = d.max_protocol_version
    if d.sdk_version is not None:
        out["sdk_version"] = d.sdk_version
    return out


def deployment_json(d: Deployment) -> dict[str, Any]:
    """DeploymentResponse (GET /deployments items): services as name/revision pairs."""
    out = _deployment_head(d)
    out["services"] = [
        {"name": n, "revision": d.service_revisions.get(n, 1)} for n in d.service_names
    ]
    return out


def detailed_deployment_json(registry: SchemaRegistry, d: Deployment) -> dict[str, Any]:
    """DetailedDeploymentResponse (GET /deployments/{id}): full service metadata."""
    out = _deployment_head(d)
    out["services"] = [service_json(s) for s in registry.services_of(d)]
    return out


def register_response_json(d: Deployment, services: list[Service]) -> dict[str, Any]:
    """RegisterDeploymentResponse (POST /deployments)."""
    out: dict[str, Any] = {
        "id": d.id,
        "services": [service_json(s) for s in services],
        "min_protocol_version": d.min_protocol_version,
        "max_protocol_version": d.max_protocol_version,
    }
    if d.sdk_version is not None:
        out["sdk_version"] = d.sdk_version
    return out
