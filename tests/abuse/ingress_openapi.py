"""An OpenAPI document of the ingress routes for the services a server has registered.

The ingress has no document of its own (its paths are the services' names), so the
fuzz test writes one from ``GET /services`` of the admin API: a call and a send path per
handler, plus the ``/restate/...`` routes (attach, output, awakeables, health). Error
answers are the ingress's ``{"code", "message"}`` JSON.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                   "source": {"type": "string"}},
}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(_ERROR, "error") for c in codes}


def _param(name: str, where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}


_BODY = {
    "required": False,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {}},
    },
}
_IDEMPOTENCY = _param("idempotency-key", "header")
# the handler's output as it returned it: any content type, or none for an empty output
_ANY_OK = {"description": "The handler's output"}
_SENT = _json({
    "type": "object",
    "required": ["invocationId", "status"],
    "properties": {"invocationId": {"type": "string"},
                   "status": {"type": "string", "enum": ["Accepted", "PreviouslyAccepted"]}},
})
# what a finished invocation's stored result or a refused request can answer
_RESULT = {"200": _ANY_OK, **_errors(400, 404, 413, 415)}


def _handler_paths(service: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    keyed = service["ty"] in ("VirtualObject", "Workflow")
    for h in service["handlers"]:
        base = f"/{service['name']}/{{key}}/{h['name']}" if keyed else f"/{service['name']}/{h['name']}"
        params = [_param("key")] if keyed else []
        # a call or send also answers GET (no body), as Restate's ingress does
        call = {"parameters": [_IDEMPOTENCY], "responses": {**_RESULT, **_errors(409)}}
        paths[base] = {
            "parameters": params,
            "post": {"operationId": f"call_{service['name']}_{h['name']}",
                     "requestBody": _BODY, **call},
            "get": {"operationId": f"get_call_{service['name']}_{h['name']}", **call},
        }
        send = {"parameters": [_IDEMPOTENCY, _param("delay", "query")],
                "responses": {"202": _SENT, **_errors(400, 404, 409, 413, 415)}}
        paths[base + "/send"] = {
            "parameters": params,
            "post": {"operationId": f"send_{service['name']}_{h['name']}",
                     "requestBody": _BODY, **send},
            "get": {"operationId": f"get_send_{service['name']}_{h['name']}", **send},
        }
    return paths


def ingress_openapi(services: list[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/restate/health": {"get": {"operationId": "health",
                                    "responses": {"200": {"description": "up"}}}},
    }
    for action in ("attach", "output"):
        extra = _errors(470) if action == "output" else {}
        paths[f"/restate/invocation/{{invocation_id}}/{action}"] = {
            "get": {"operationId": f"{action}_by_id", "parameters": [_param("invocation_id")],
                    "responses": {**_RESULT, **extra}},
        }
        paths[f"/restate/workflow/{{workflow}}/{{workflow_id}}/{action}"] = {
            "get": {"operationId": f"{action}_workflow",
                    "parameters": [_param("workflow"), _param("workflow_id")],
                    "responses": {**_RESULT, **extra}},
        }
    for action in ("resolve", "reject"):
        paths[f"/restate/awakeables/{{awakeable_id}}/{action}"] = {
            "post": {"operationId": f"{action}_awakeable", "parameters": [_param("awakeable_id")],
                     "requestBody": _BODY,
                     "responses": {"202": {"description": "Completed"}, **_errors(400, 413)}},
        }
    for service in services:
        paths.update(_handler_paths(service))
    return {
        "openapi": "3.1.0",
        "info": {"title": "durably ingress (generated for the registered services)",
                 "version": "test"},
        "paths": paths,
    }
