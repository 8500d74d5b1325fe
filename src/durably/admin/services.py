"""Per-service admin routes beyond the registry's: `POST /services/{service}/state` (replace
the state of one virtual object or workflow key) and `GET /services/{service}/openapi` (an
OpenAPI document for calling the service's handlers through the ingress).

Status codes follow restate-server 1.7.12 (checked against it), with two deliberate
differences, because durably applies the change before it answers where Restate queues it:
- an unknown service is 404 (Restate answers 202 and drops the change, so a misspelt name
  goes unnoticed);
- a `version` that no longer matches the stored state is 409, and a key an invocation holds
  is 409 too (Restate answers 202 and drops, or defers, the change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durably.admin.app import JSONResponse, _json_body, _PlainError
from durably.engine import management
from durably.schema.errors import AdminError
from durably.schema.registry import SchemaRegistry, Service

if TYPE_CHECKING:
    from durably.engine.engine import Engine

__all__ = ["service_openapi", "service_routes"]

_SHAPE = "Failed to deserialize the JSON body into the target type: "
_TYPE_NAMES = {"service": "Service", "virtual_object": "VirtualObject", "workflow": "Workflow"}


def _deserialize(detail: str) -> _PlainError:
    return _PlainError(422, _SHAPE + detail)


def _state_bytes(name: str, value: Any) -> bytes:
    """A value of `new_state`: bytes as a list of u8 (what Restate's CLI sends), or a string
    (its UTF-8 bytes, as serde reads a string into bytes)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, list):
        raise _deserialize(f"new_state.{name}: invalid type, expected a sequence of bytes")
    for i, b in enumerate(value):
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 255:
            raise _deserialize(
                f"new_state.{name}[{i}]: invalid value: {b!r}, expected u8"
            )
    return bytes(value)


def parse_state_request(body: Any) -> tuple[str, dict[str, bytes], str | None]:
    if not isinstance(body, dict):
        raise _deserialize("invalid type, expected struct ModifyServiceStateRequest")
    for field in ("object_key", "new_state"):
        if field not in body:
            raise _deserialize(f"missing field `{field}`")
    key, new_state, version = body["object_key"], body["new_state"], body.get("version")
    if not isinstance(key, str):
        raise _deserialize("object_key: invalid type, expected a string")
    if not isinstance(new_state, dict):
        raise _deserialize("new_state: invalid type, expected a map")
    if version is not None and not isinstance(version, str):
        raise _deserialize("version: invalid type, expected a string")
    return key, {k: _state_bytes(k, v) for k, v in new_state.items()}, version


async def modify_state(engine: Engine, registry: SchemaRegistry, service_name: str,
                       body: Any) -> Response:
    """The route's work, shared with the web UI's state editor."""
    key, new_state, version = parse_state_request(body)
    service = registry.get_service(service_name)
    if service.ty == "service":
        raise AdminError(400, f"Cannot modify state for service type {_TYPE_NAMES[service.ty]}")
    outcome = management.replace_state(engine, service.name, key, new_state, version)
    if outcome == "locked":
        raise AdminError(
            409, f"The key '{key}' of '{service.name}' is held by a running invocation; "
            "change its state when the invocation has finished.")
    if outcome == "version-mismatch":
        raise AdminError(409, f"The state of '{service.name}/{key}' changed since version "
                         f"'{version}' was read.")
    await engine.committed()
    return Response(status_code=202)


def service_routes(engine: Engine, registry: SchemaRegistry) -> list[Route]:
    async def state(request: Request) -> Response:
        return await modify_state(engine, registry, request.path_params["service"],
                                  await _json_body(request))

    async def openapi(request: Request) -> Response:
        service = registry.get_service(request.path_params["service"])
        return JSONResponse(service_openapi(service))

    return [
        Route("/services/{service}/state", state, methods=["POST"]),
        Route("/services/{service}/openapi", openapi, methods=["GET"]),
    ]


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "RestateError",
        "properties": {"code": {"type": "number"}, "message": {"type": "string"}},
        "required": ["message"],
    }


def service_openapi(service: Service) -> dict[str, Any]:
    """OpenAPI 3.1 for calling `service` through the ingress: one call and one send operation
    per public handler, with the JSON schemas the SDK declared."""
    keyed = service.ty != "service"
    params: list[dict[str, Any]] = [
        {"name": "idempotency-key", "in": "header", "required": False,
         "schema": {"type": "string"}},
    ]
    if keyed:
        params.insert(0, {"name": "key", "in": "path", "required": True,
                          "schema": {"type": "string"}})
    prefix = f"/{service.name}/{{key}}" if keyed else f"/{service.name}"
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"RestateError": _error_schema()}
    for h in service.manifest.handlers:
        if not service.handler_public(h):
            continue
        op: dict[str, Any] = {
            "operationId": h.name,
            "summary": h.documentation or f"Call {service.name} handler {h.name}",
            "parameters": params,
            "responses": {
                "200": {"description": "The handler's result"},
                "default": {"description": "Error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RestateError"}}}},
            },
        }
        if h.ty is not None:
            op["x-restate-handler-type"] = h.ty
        if h.input.present:
            schema = h.input.json_schema if h.input.json_schema is not None else {}
            schemas[f"{h.name}Request"] = schema
            op["requestBody"] = {"required": h.input.required, "content": {
                h.input.content_type or "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{h.name}Request"}}}}
        if h.output.content_type is not None:
            schema = h.output.json_schema if h.output.json_schema is not None else {}
            schemas[f"{h.name}Response"] = schema
            op["responses"]["200"]["content"] = {h.output.content_type: {
                "schema": {"$ref": f"#/components/schemas/{h.name}Response"}}}
        send = {k: v for k, v in op.items() if k != "responses"}
        send["operationId"] = f"{h.name}Send"
        send["summary"] = f"Send {service.name} handler {h.name} without waiting"
        send["parameters"] = [*params, {"name": "delay", "in": "query", "required": False,
                                        "schema": {"type": "string"}}]
        send["responses"] = {"202": {"description": "Accepted", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "invocationId": {"type": "string"}, "status": {"type": "string"}}}}}}}
        paths[f"{prefix}/{h.name}"] = {"post": op}
        paths[f"{prefix}/{h.name}/send"] = {"post": send}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": service.name, "version": str(service.revision)},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if service.manifest.documentation:
        doc["info"]["description"] = service.manifest.documentation
    return doc
