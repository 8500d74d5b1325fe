"""Discovery: the Accept header we send to `GET /discover` and parsing of the manifest.

parse_manifest() turns the SDK's JSON into frozen dataclasses and rejects, with a message fit
for a human registering a deployment, anything Restate itself would refuse to register. The
raw JSON of each service and handler is kept so the admin API can echo fields verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from durably.protocol.version import MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION

__all__ = [
    "DISCOVERY_ACCEPT",
    "MANIFEST_VERSIONS",
    "EndpointManifest",
    "HandlerManifest",
    "InputRules",
    "ManifestError",
    "OutputRules",
    "RetryPolicyManifest",
    "ServiceManifest",
    "media_type_matches",
    "parse_manifest",
]

MANIFEST_VERSIONS = (1, 2, 3, 4)
_MANIFEST_CT = "application/vnd.restate.endpointmanifest.v{}+json"
# Byte for byte what restate-server 1.7 sends; the SDKs pick the highest version they know.
DISCOVERY_ACCEPT = ", ".join(_MANIFEST_CT.format(v) for v in MANIFEST_VERSIONS)
_MANIFEST_CT_RE = re.compile(r"application/vnd\.restate\.endpointmanifest\.v(\d+)\+json")

SERVICE_NAME_RE = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$")
HANDLER_NAME_RE = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$")

ProtocolMode = Literal["bidi", "request_response"]
ServiceType = Literal["service", "virtual_object", "workflow"]
HandlerType = Literal["exclusive", "shared", "workflow"]

_PROTOCOL_MODES: dict[str, ProtocolMode] = {
    "BIDI_STREAM": "bidi",
    "REQUEST_RESPONSE": "request_response",
}
_SERVICE_TYPES: dict[str, ServiceType] = {
    "SERVICE": "service",
    "VIRTUAL_OBJECT": "virtual_object",
    "WORKFLOW": "workflow",
}
_HANDLER_TYPES: dict[str, HandlerType] = {
    "EXCLUSIVE": "exclusive",
    "SHARED": "shared",
    "WORKFLOW": "workflow",
}
# Which declared handler types make sense per service type. Plain services have no key and
# hence no lock, so only "shared" (or nothing) is meaningful there.
_ALLOWED_HANDLER_TYPES: dict[ServiceType, frozenset[HandlerType]] = {
    "service": frozenset({"shared"}),
    "virtual_object": frozenset({"exclusive", "shared"}),
    "workflow": frozenset({"workflow", "shared"}),
}
_DEFAULT_HANDLER_TYPE: dict[ServiceType, HandlerType | None] = {
    "service": None,
    "virtual_object": "exclusive",
    "workflow": "workflow",
}


class ManifestError(ValueError):
    """The deployment's discovery response cannot be registered. str() is user-facing."""


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def _split_media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def media_type_matches(pattern: str, content_type: str) -> bool:
    """Accept-style match: `pattern` may be `*/*`, `type/*` or a comma-separated list of those.

    Parameters (`; charset=utf-8`) are ignored on both sides: the SDK decides what to do with
    them, the server only has to route sensible requests.
    """
    actual = _split_media_type(content_type)
    a_type, _, a_sub = actual.partition("/")
    for alt in pattern.split(","):
        p = _split_media_type(alt)
        if not p:
            continue
        p_type, _, p_sub = p.partition("/")
        if p_type == "*" and p_sub in ("*", ""):
            return True
        if p_type == a_type and (p_sub == "*" or p_sub == a_sub):
            return True
    return False


@dataclass(frozen=True)
class InputRules:
    """What an ingress request body must look like for one handler.

    `present` is False for `"input": {}` (or no input key): the handler takes no input, so the
    request must have neither a body nor a content-type header (Restate answers 400 even for an
    empty body with a content-type).
    """

    required: bool = False
    content_type: str | None = None
    json_schema: object | None = field(default=None, hash=False)
    present: bool = False

    def validate(self, content_type: str | None, body: bytes) -> str | None:
        """Return a user-facing error message, or None if the request is acceptable."""
        if content_type is not None and not content_type.strip():
            content_type = None
        if not self.present:
            if content_type is not None:
                return (
                    "the handler does not accept input, "
                    f"but the request has content-type {content_type!r}"
                )
            if body:
                return "the handler does not accept input, but the request has a body"
            return None
        if not body and self.required:
            return "the handler requires input, but the request body is empty"
        if not body and content_type is None:
            return None
        if self.content_type is None:
            # Input declared without a content type: anything goes.
            return None
        if content_type is None:
            return f"missing content-type header, expected {self.content_type!r}"
        if not media_type_matches(self.content_type, content_type):
            return f"content-type {content_type!r} is not accepted, expected {self.content_type!r}"
        return None


@dataclass(frozen=True)
class OutputRules:
    content_type: str | None = None
    set_content_type_if_empty: bool = False
    json_schema: object | None = field(default=None, hash=False)


@dataclass(frozen=True)
class RetryPolicyManifest:
    """The manifest's retryPolicy* options; None fields fall back to the server's defaults."""

    initial_interval_ms: int | None = None
    max_interval_ms: int | None = None
    max_attempts: int | None = None
    exponentiation_factor: float | None = None
    on_max_attempts: Literal["PAUSE", "KILL"] | None = None


@dataclass(frozen=True)
class HandlerManifest:
    name: str
    # Resolved: the manifest's value, else the default for the service type
    # (exclusive for virtual objects, workflow for workflows, None for plain services).
    ty: HandlerType | None
    input: InputRules
    output: OutputRules
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy: RetryPolicyManifest | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    ty: ServiceType
    handlers: tuple[HandlerManifest, ...]
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy: RetryPolicyManifest | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    def handler(self, name: str) -> HandlerManifest | None:
        for h in self.handlers:
            if h.name == name:
                return h
        return None

    @property
    def is_keyed(self) -> bool:
        return self.ty != "service"


@dataclass(frozen=True)
class EndpointManifest:
    protocol_mode: ProtocolMode
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[ServiceManifest, ...]
    manifest_version: int

    def service(self, name: str) -> ServiceManifest | None:
        for s in self.services:
            if s.name == name:
                return s
        return None


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def parse_manifest(content_type: str, body: bytes) -> EndpointManifest:
    """Validate and parse a discovery response. Raises ManifestError."""
    manifest_version = _manifest_version(content_type)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"the discovery response is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError("the discovery response must be a JSON object")

    mode_raw = doc.get("protocolMode")
    if mode_raw is None:
        raise ManifestError(
            "the manifest has no protocolMode; only HTTP deployments (BIDI_STREAM or "
            "REQUEST_RESPONSE) are supported"
        )
    if mode_raw not in _PROTOCOL_MODES:
        raise ManifestError(
            f"unknown protocolMode {mode_raw!r}, expected BIDI_STREAM or REQUEST_RESPONSE"
        )
    min_v = _int(doc, "minProtocolVersion", "the manifest", required=True)
    max_v = _int(doc, "maxProtocolVersion", "the manifest", required=True)
    assert min_v is not None and max_v is not None
    if min_v > max_v:
        raise ManifestError(
            f"minProtocolVersion {min_v} is greater than maxProtocolVersion {max_v}"
        )
    if max_v < MIN_PROTOCOL_VERSION or min_v > MAX_PROTOCOL_VERSION:
        raise ManifestError(
            f"the deployment supports service protocol versions [{min_v}, {max_v}], "
            f"but this server supports [{MIN_PROTOCOL_VERSION}, {MAX_PROTOCOL_VERSION}]; "
            "upgrade or downgrade the SDK"
        )

    services_raw = doc.get("services", [])
    if not isinstance(services_raw, list):
        raise ManifestError("'services' must be a list")
    services: list[ServiceManifest] = []
    seen: set[str] = set()
    for i, s in enumerate(services_raw):
        svc = _parse_service(s, i)
        if svc.name in seen:
            raise ManifestError(f"service {svc.name!r} appears more than once")
        seen.add(svc.name)
        services.append(svc)

    return EndpointManifest(
        protocol_mode=_PROTOCOL_MODES[mode_raw],
        min_protocol_version=min_v,
        max_protocol_version=max_v,
        services=tuple(services),
        manifest_version=manifest_version,
    )


def _manifest_version(content_type: str) -> int:
    m = _MANIFEST_CT_RE.fullmatch(_split_media_type(content_type or ""))
    version = int(m.group(1)) if m else None
    if version not in MANIFEST_VERSIONS:
        raise ManifestError(
            f"the discovery response has content-type {content_type!r}, which is not one we "
            f"asked for ({DISCOVERY_ACCEPT}); is this a Restate SDK endpoint?"
        )
    assert version is not None
    return version


def _parse_service(raw: object, index: int) -> ServiceManifest:
    if not isinstance(raw, dict):
        raise ManifestError(f"services[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"services[{index}] has no name")
    where = f"service {name!r}"
    if not SERVICE_NAME_RE.match(name):
        raise ManifestError(
            f"{where}: invalid name; service names must match {SERVICE_NAME_RE.pattern}"
        )
    ty_raw = raw.get("ty")
    if ty_raw not in _SERVICE_TYPES:
        raise ManifestError(
            f"{where}: unknown ty {ty_raw!r}, expected SERVICE, VIRTUAL_OBJECT or WORKFLOW"
        )
    ty = _SERVICE_TYPES[ty_raw]

    handlers_raw = raw.get("handlers", [])
    if not isinstance(handlers_raw, list):
        raise ManifestError(f"{where}: 'handlers' must be a list")
    handlers: list[HandlerManifest] = []
    seen: set[str] = set()
    for i, h in enumerate(handlers_raw):
        handler = _parse_handler(h, i, where, ty)
        if handler.name in seen:
            raise ManifestError(f"{where}: handler {handler.name!r} appears more than once")
        seen.add(handler.name)
        handlers.append(handler)

    if ty == "workflow":
        runs = [h.name for h in handlers if h.ty == "workflow"]
        if len(runs) != 1:
            raise ManifestError(
                f"{where}: a workflow must have exactly one handler of type WORKFLOW, "
                f"found {len(runs)}" + (f" ({', '.join(runs)})" if runs else "")
            )

    return ServiceManifest(
        name=name,
        ty=ty,
        handlers=tuple(handlers),
        documentation=_str(raw, "documentation", where),
        metadata=_metadata(raw, where),
        inactivity_timeout_ms=_int(raw, "inactivityTimeout", where),
        abort_timeout_ms=_int(raw, "abortTimeout", where),
        journal_retention_ms=_int(raw, "journalRetention", where),
        idempotency_retention_ms=_int(raw, "idempotencyRetention", where),
        enable_lazy_state=_bool(raw, "enableLazyState", where),
        ingress_private=_bool(raw, "ingressPrivate", where),
        retry_policy=_retry_policy(raw, where),
        raw=raw,
    )


def _parse_handler(
    raw: object, index: int, service_where: str, service_ty: ServiceType
) -> HandlerManifest:
    if not isinstance(raw, dict):
        raise ManifestError(f"{service_where}: handlers[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{service_where}: handlers[{index}] has no name")
    where = f"{service_where}, handler {name!r}"
    if not HANDLER_NAME_RE.match(name):
        raise ManifestError(
            f"{where}: invalid name; handler names must match {HANDLER_NAME_RE.pattern}"
        )
    ty_raw = raw.get("ty")
    ty: HandlerType | None
    if ty_raw is None:
        ty = _DEFAULT_HANDLER_TYPE[service_ty]
    elif ty_raw in _HANDLER_TYPES:
        ty = _HANDLER_TYPES[ty_raw]
        if ty not in _ALLOWED_HANDLER_TYPES[service_ty]:
            raise ManifestError(
                f"{where}: handler type {ty_raw} is not allowed in a {service_ty.upper()} service"
            )
    else:
        raise ManifestError(
            f"{where}: unknown ty {ty_raw!r}, expected EXCLUSIVE, SHARED or WORKFLOW"
        )

    wf_retention = _int(raw, "workflowCompletionRetention", where)
    if wf_retention is not None and ty != "workflow":
        raise ManifestError(
            f"{where}: workflowCompletionRetention is only allowed on a WORKFLOW handler"
        )

    return HandlerManifest(
        name=name,
        ty=ty,
        input=_input_rules(raw.get("input"), where),
        output=_output_rules(raw.get("output"), where),
        documentation=_str(raw, "documentation", where),
        metadata=_metadata(raw, where),
        inactivity_timeout_ms=_int(raw, "inactivityTimeout", where),
        abort_timeout_ms=_int(raw, "abortTimeout", where),
        journal_retention_ms=_int(raw, "journalRetention", where),
        idempotency_retention_ms=_int(raw, "idempotencyRetention", where),
        workflow_completion_retention_ms=wf_retention,
        enable_lazy_state=_bool(raw, "enableLazyState", where),
        ingress_private=_bool(raw, "ingressPrivate", where),
        retry_policy=_retry_policy(raw, where),
        raw=raw,
    )


def _input_rules(raw: object, where: str) -> InputRules:
    # Absent or {} both mean "no input" (the Python SDK emits {} for handlers without a
    # parameter); anything with at least one key describes an accepted payload.
    if raw is None or raw == {}:
        return InputRules(present=False)
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: 'input' must be a JSON object")
    required = _bool(raw, "required", f"{where} input")
    return InputRules(
        required=bool(required),
        content_type=_str(raw, "contentType", f"{where} input"),
        json_schema=raw.get("jsonSchema"),
        present=True,
    )


def _output_rules(raw: object, where: str) -> OutputRules:
    if raw is None:
        return OutputRules()
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: 'output' must be a JSON object")
    return OutputRules(
        content_type=_str(raw, "contentType", f"{where} output"),
        set_content_type_if_empty=bool(_bool(raw, "setContentTypeIfEmpty", f"{where} output")),
        json_schema=raw.get("jsonSchema"),
    )


def _retry_policy(raw: Mapping[str, Any], where: str) -> RetryPolicyManifest | None:
    on_max = raw.get("retryPolicyOnMaxAttempts")
    if on_max is not None and on_max not in ("PAUSE", "KILL"):
        raise ManifestError(
            f"{where}: retryPolicyOnMaxAttempts must be PAUSE or KILL, got {on_max!r}"
        )
    factor = raw.get("retryPolicyExponentiationFactor")
    if factor is not None and (
        isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1.0
    ):
        raise ManifestError(
            f"{where}: retryPolicyExponentiationFactor must be a number >= 1, got {factor!r}"
        )
    policy = RetryPolicyManifest(
        initial_interval_ms=_int(raw, "retryPolicyInitialInterval", where),
        max_interval_ms=_int(raw, "retryPolicyMaxInterval", where),
        max_attempts=_int(raw, "retryPolicyMaxAttempts", where),
        exponentiation_factor=float(factor) if factor is not None else None,
        on_max_attempts=cast(Literal["PAUSE", "KILL"] | None, on_max),
    )
    return None if policy == RetryPolicyManifest() else policy


def _int(raw: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> int | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{where} is missing {key}")
        return None
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return int(value)


def _bool(raw: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise ManifestError(f"{where}: {key} must be a boolean, got {value!r}")
    return value


def _str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _metadata(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    value = raw.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where}: metadata must be an object of string values")
    return dict(value)
