"""durably's own OpenAPI description of the admin routes it serves (GET /openapi).

Written for our routes and the response shapes in render.py, every error answer included
(tests/abuse fuzzes the server against this document with schemathesis, so a route or an
answer missing here fails CI). Routes added through `extra_routes` contribute their own
path items via `extra_paths`.
"""

from __future__ import annotations

from typing import Any

from durably.admin.invocations import ACTIONS

__all__ = ["build_openapi"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _error(description: str, *, text: bool = False) -> dict[str, Any]:
    """An error answer: `{"message", "restate_code"}` JSON; with `text`, also the plain-text
    body that request-parsing failures get (as Restate's extractors answer them)."""
    answer = _json(_ref("ErrorDescriptionResponse"), description)
    if text:
        answer["content"]["text/plain"] = {"schema": {"type": "string"}}
    return answer


_ERRORS = {
    "400": _error("Bad request", text=True),
    "404": _error("Not found"),
    "409": _error("Conflict"),
    "500": _error("Internal server error"),
}
# A JSON body that is missing, not JSON, or of the wrong shape (plain text, as Restate).
_BODY_ERRORS = {
    "400": _error("Bad request: the body is not JSON, or a field is invalid", text=True),
    "415": _text("The body is not `Content-Type: application/json`"),
    "422": _text("The JSON body does not have the expected shape"),
}
_INVOCATION_ID_ERRORS = {
    "400": _error("The invocation id is malformed, or a query parameter is invalid"),
    "404": _error("No such invocation"),
}

_DURATION = {
    "type": "string",
    "description": "Friendly (`1h 30m`, `500ms`) or ISO 8601 (`PT1H30M`) duration.",
}
_NULLABLE_DURATION = {**_DURATION, "type": ["string", "null"]}
_RETRY = {
    "type": "object",
    "properties": {
        "initial_interval": {**_DURATION, "type": ["string", "null"]},
        "exponentiation_factor": {"type": ["number", "null"]},
        "max_attempts": {"type": ["integer", "null"]},
        "max_interval": {**_DURATION, "type": ["string", "null"]},
        "on_max_attempts": {"type": ["string", "null"], "enum": ["Pause", "Kill", None]},
    },
}
_INFO = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    },
}

_SCHEMAS: dict[str, Any] = {
    "ErrorDescriptionResponse": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string"},
            "restate_code": {"type": ["string", "null"]},
        },
    },
    "VersionInformation": {
        "type": "object",
        "required": ["version", "min_admin_api_version", "max_admin_api_version"],
        "properties": {
            "version": {"type": "string"},
            "min_admin_api_version": {"type": "integer"},
            "max_admin_api_version": {"type": "integer"},
            "ingress_endpoint": {"type": ["string", "null"], "format": "uri"},
            "features": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    },
    "RegisterDeploymentRequest": {
        "type": "object",
        "required": ["uri"],
        "properties": {
            "uri": {"type": "string", "format": "uri"},
            "additional_headers": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string"},
            },
            "use_http_11": {"type": "boolean", "default": False},
            "force": {"type": ["boolean", "null"], "default": False},
            "breaking": {"type": "boolean", "default": False},
            "dry_run": {"type": "boolean", "default": False},
        },
    },
    "HandlerMetadata": {
        "type": "object",
        "required": ["name", "input_description", "output_description"],
        "properties": {
            "name": {"type": "string"},
            "ty": {"type": ["string", "null"], "enum": ["Exclusive", "Shared", "Workflow", None]},
            "documentation": {"type": ["string", "null"]},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "idempotency_retention": _NULLABLE_DURATION,
            "journal_retention": _NULLABLE_DURATION,
            "inactivity_timeout": _NULLABLE_DURATION,
            "abort_timeout": _NULLABLE_DURATION,
            "enable_lazy_state": {"type": ["boolean", "null"]},
            "public": {"type": "boolean"},
            "input_description": {"type": "string"},
            "output_description": {"type": "string"},
            "input_json_schema": {},
            "output_json_schema": {},
            "retry_policy": _RETRY,
            "info": _INFO,
        },
    },
    "ServiceMetadata": {
        "type": "object",
        "required": ["name", "ty", "handlers", "deployment_id", "revision"],
        "properties": {
            "name": {"type": "string"},
            "ty": {"type": "string", "enum": ["Service", "VirtualObject", "Workflow"]},
            "handlers": {"type": "array", "items": _ref("HandlerMetadata")},
            "documentation": {"type": ["string", "null"]},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "deployment_id": {"type": "string"},
            "revision": {"type": "integer", "minimum": 1},
            "public": {"type": "boolean"},
            "idempotency_retention": _DURATION,
            "workflow_completion_retention": _NULLABLE_DURATION,
            "journal_retention": _NULLABLE_DURATION,
            "inactivity_timeout": _DURATION,
            "abort_timeout": _DURATION,
            "enable_lazy_state": {"type": "boolean"},
            "retry_policy": _RETRY,
            "info": _INFO,
        },
    },
    "ServiceNameRevPair": {
        "type": "object",
        "required": ["name", "revision"],
        "properties": {"name": {"type": "string"}, "revision": {"type": "integer"}},
    },
    "RegisterDeploymentResponse": {
        "type": "object",
        "required": ["id", "services"],
        "properties": {
            "id": {"type": "string"},
            "services": {"type": "array", "items": _ref("ServiceMetadata")},
            "min_protocol_version": {"type": "integer"},
            "max_protocol_version": {"type": "integer"},
            "sdk_version": {"type": ["string", "null"]},
        },
    },
}


def _deployment_schema(services_item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [
            "id",
            "uri",
            "protocol_type",
            "http_version",
            "created_at",
            "min_protocol_version",
            "max_protocol_version",
            "services",
        ],
        "properties": {
            "id": {"type": "string"},
            "uri": {"type": "string", "format": "uri"},
            "protocol_type": {"type": "string", "enum": ["RequestResponse", "BidiStream"]},
            "http_version": {"type": "string"},
            "additional_headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "min_protocol_version": {"type": "integer"},
            "max_protocol_version": {"type": "integer"},
            "sdk_version": {"type": ["string", "null"]},
            "services": {"type": "array", "items": services_item},
        },
    }


_SCHEMAS["DeploymentResponse"] = _deployment_schema(_ref("ServiceNameRevPair"))
_SCHEMAS["DetailedDeploymentResponse"] = _deployment_schema(_ref("ServiceMetadata"))
_SCHEMAS["ListDeploymentsResponse"] = {
    "type": "object",
    "required": ["deployments"],
    "properties": {"deployments": {"type": "array", "items": _ref("DeploymentResponse")}},
}
_SCHEMAS["ListServicesResponse"] = {
    "type": "object",
    "required": ["services"],
    "properties": {"services": {"type": "array", "items": _ref("ServiceMetadata")}},
}
_SCHEMAS["ListServiceHandlersResponse"] = {
    "type": "object",
    "required": ["handlers"],
    "properties": {"handlers": {"type": "array", "items": _ref("HandlerMetadata")}},
}
_SCHEMAS["ModifyServiceRequest"] = {
    "type": "object",
    "properties": {
        "public": {"type": ["boolean", "null"]},
        "idempotency_retention": _NULLABLE_DURATION,
        "workflow_completion_retention": _NULLABLE_DURATION,
        "journal_retention": _NULLABLE_DURATION,
        "inactivity_timeout": _NULLABLE_DURATION,
        "abort_timeout": _NULLABLE_DURATION,
    },
}


_NULLABLE_STRING = {"type": ["string", "null"]}
# The ids' forms: a prefix, then base62 digits of a 128-bit (and for the invocation's
# partition key, 64-bit) number: the leading digit is capped at the largest it can be.
DEPLOYMENT_ID_PATTERN = "^dp_1[0-7][0-9A-Za-z]{21}$"
INVOCATION_ID_PATTERN = "^inv_1[0-9a-l][0-9a-zA-Z]{10}[0-7][0-9a-zA-Z]{21}$"
_SCHEMAS["QueryRequest"] = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string", "minLength": 1}},
}
_SCHEMAS["QueryResult"] = {
    "type": "object",
    "required": ["rows"],
    "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
}
_SCHEMAS["InvocationStatus"] = {
    "type": "object",
    "required": ["id", "target", "target_service_name", "target_handler_name", "status"],
    "properties": {
        "id": {"type": "string"},
        "target": {"type": "string"},
        "target_service_name": {"type": "string"},
        "target_service_key": _NULLABLE_STRING,
        "target_handler_name": {"type": "string"},
        "target_service_ty": _NULLABLE_STRING,
        "status": {"type": "string"},
        "idempotency_key": _NULLABLE_STRING,
        "invoked_by": _NULLABLE_STRING,
        "invoked_by_id": _NULLABLE_STRING,
        "invoked_by_target": _NULLABLE_STRING,
        "restarted_from": _NULLABLE_STRING,
        "pinned_deployment_id": _NULLABLE_STRING,
        "pinned_service_protocol_version": {"type": ["integer", "null"]},
        "journal_size": {"type": ["integer", "null"]},
        "retry_count": {"type": ["integer", "null"]},
        "last_failure": _NULLABLE_STRING,
        "last_failure_error_code": {"type": ["string", "integer", "null"]},
        "next_retry_at": _NULLABLE_STRING,
        "created_at": _NULLABLE_STRING,
        "modified_at": _NULLABLE_STRING,
        "inboxed_at": _NULLABLE_STRING,
        "scheduled_start_at": _NULLABLE_STRING,
        "running_at": _NULLABLE_STRING,
        "completed_at": _NULLABLE_STRING,
        "completion_expires_at": _NULLABLE_STRING,
        "deadlock": {},
        "completion_result": {"type": "string", "enum": ["success", "failure"]},
        "completion_failure": {"type": "object"},
    },
}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }


def _paths() -> dict[str, Any]:
    dep = _param("deployment", schema={"type": "string", "pattern": DEPLOYMENT_ID_PATTERN})
    svc = _param("service")
    inv = _param("invocation_id", schema={"type": "string", "pattern": INVOCATION_ID_PATTERN})
    dep_id_error = {"400": _text("The deployment id is malformed")}
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Health check",
                "responses": {"200": {"description": "The admin API is up"}},
            }
        },
        "/version": {
            "get": {
                "operationId": "version",
                "summary": "Server and admin API versions",
                "responses": {"200": _json(_ref("VersionInformation"), "")},
            }
        },
        "/openapi": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {"200": _text("Metrics")},
            }
        },
        "/deployments": {
            "get": {
                "operationId": "list_deployments",
                "summary": "List deployments",
                "responses": {"200": _json(_ref("ListDeploymentsResponse"), "")},
            },
            "post": {
                "operationId": "create_deployment",
                "summary": "Register a deployment",
                "description": "Discovers the deployment's services and registers them. 201 "
                "when created, 200 when the URI was already registered (unchanged unless "
                "`force`).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RegisterDeploymentRequest")}},
                },
                "responses": {
                    "200": _json(_ref("RegisterDeploymentResponse"), "Already registered"),
                    "201": _json(_ref("RegisterDeploymentResponse"), "Created"),
                    **_ERRORS,
                    **_BODY_ERRORS,
                    "400": _error("Bad request: bad JSON, a bad URI, or discovery failed",
                                  text=True),
                },
            },
        },
        "/deployments/{deployment}": {
            "parameters": [dep],
            "get": {
                "operationId": "get_deployment",
                "summary": "Get a deployment",
                "responses": {
                    "200": _json(_ref("DetailedDeploymentResponse"), ""),
                    **dep_id_error,
                    "404": _ERRORS["404"],
                },
            },
            "delete": {
                "operationId": "delete_deployment",
                "summary": "Remove a deployment (requires force=true)",
                "parameters": [_param("force", "query", {"type": "boolean"})],
                "responses": {
                    "202": {"description": "Removed"},
                    **dep_id_error,
                    "404": _ERRORS["404"],
                    "501": {"description": "Removal without force is not supported"},
                },
            },
        },
        "/services": {
            "get": {
                "operationId": "list_services",
                "summary": "List services (latest revisions)",
                "responses": {"200": _json(_ref("ListServicesResponse"), "")},
            }
        },
        "/services/{service}": {
            "parameters": [svc],
            "get": {
                "operationId": "get_service",
                "summary": "Get a service",
                "responses": {"200": _json(_ref("ServiceMetadata"), ""), "404": _ERRORS["404"]},
            },
            "patch": {
                "operationId": "modify_service",
                "summary": "Modify a service's options (current revision)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ModifyServiceRequest")}},
                },
                "responses": {
                    "200": _json(_ref("ServiceMetadata"), ""),
                    **_BODY_ERRORS,
                    "404": _ERRORS["404"],
                },
            },
        },
        "/services/{service}/handlers": {
            "parameters": [svc],
            "get": {
                "operationId": "list_service_handlers",
                "summary": "List a service's handlers",
                "responses": {
                    "200": _json(_ref("ListServiceHandlersResponse"), ""),
                    "404": _ERRORS["404"],
                },
            },
        },
        "/services/{service}/handlers/{handler}": {
            "parameters": [svc, _param("handler")],
            "get": {
                "operationId": "get_service_handler",
                "summary": "Get a handler",
                "responses": {"200": _json(_ref("HandlerMetadata"), ""), "404": _ERRORS["404"]},
            },
        },
        "/invocations/{invocation_id}": {
            "parameters": [inv],
            "get": {
                "operationId": "get_invocation",
                "summary": "An invocation's status (durably's own; includes a deadlock it is "
                "part of)",
                "responses": {
                    "200": _json(_ref("InvocationStatus"), ""),
                    **_INVOCATION_ID_ERRORS,
                },
            },
            "delete": {
                "operationId": "delete_invocation",
                "summary": "Cancel, kill or purge an invocation (the older form of PATCH)",
                "parameters": [_param("mode", "query", {"type": "string",
                                                         "enum": ["cancel", "kill", "purge"]})],
                "responses": {
                    "202": {"description": "Done or under way"},
                    **_INVOCATION_ID_ERRORS,
                    "409": _ERRORS["409"],
                },
            },
        },
        "/invocations/{invocation_id}/{action}": {
            "parameters": [
                inv,
                _param("action", schema={"type": "string", "enum": list(ACTIONS)}),
            ],
            "patch": {
                "operationId": "act_on_invocation",
                "summary": "cancel, kill, purge, purge-journal, pause, resume or "
                "restart-as-new",
                "parameters": [
                    _param("deployment", "query"),
                    _param("from", "query", {"type": "integer", "minimum": 0}),
                ],
                "responses": {
                    "200": _json(
                        {"type": "object",
                         "properties": {"new_invocation_id": {"type": "string"}}},
                        "Done (restart-as-new: the new invocation's id)",
                    ),
                    "202": {"description": "Accepted, takes effect asynchronously"},
                    **_INVOCATION_ID_ERRORS,
                    "409": _ERRORS["409"],
                    "410": _error("The journal needed to restart is gone"),
                    "422": _error("Not supported for this invocation"),
                    "425": _error("Not started yet"),
                },
            },
        },
        "/query": {
            "post": {
                "operationId": "query",
                "summary": "SQL over the sys_* introspection tables",
                "description": "`Accept: application/json` answers `{\"rows\": [...]}`; any "
                "other Accept an Arrow IPC stream.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("QueryRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "The rows",
                        "content": {
                            "application/json": {"schema": _ref("QueryResult")},
                            "application/vnd.apache.arrow.stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "400": _error("Bad JSON, an SQL error, or a refused query", text=True),
                    "415": _text("The body is not `Content-Type: application/json`"),
                    "422": _text("The JSON body has no string `query`"),
                },
            }
        },
        "/services/{service}/state": {
            "parameters": [svc],
            "post": {
                "operationId": "modify_service_state",
                "summary": "Replace the state of one virtual object or workflow key",
                "description": "Body: `object_key`, `new_state` (state key -> bytes as a list "
                "of u8, or a string), optional `version` (the state must still be at it). 409 "
                "when the key is held by a running invocation or the version moved on.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["object_key", "new_state"], "properties": {
                        "object_key": {"type": "string"},
                        "version": {"type": "string"},
                        "new_state": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"type": "integer"}}}}}}}},
                "responses": {
                    "202": {"description": "Replaced"},
                    **_BODY_ERRORS,
                    "404": _ERRORS["404"],
                    "409": _ERRORS["409"],
                },
            },
        },
        "/services/{service}/openapi": {
            "parameters": [svc],
            "get": {
                "operationId": "get_service_openapi",
                "summary": "OpenAPI document for calling the service through the ingress",
                "responses": {"200": {"description": "OpenAPI 3.1"}, "404": _ERRORS["404"]},
            },
        },
    }


def build_openapi(
    version: str,
    extra_paths: dict[str, Any] | None = None,
    extra_schemas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    paths = _paths()
    schemas = dict(_SCHEMAS)
    # Kafka clusters, subscriptions and parked records (described in durably.kafka.admin)
    from durably.kafka.admin import openapi_paths, openapi_schemas

    paths.update(openapi_paths())
    schemas.update(openapi_schemas())
    paths.update(extra_paths or {})
    schemas.update(extra_schemas or {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "durably admin API",
            "description": "Deployments, services, invocations and SQL introspection of a "
            "durably server. The same routes are served under /v2, /v3 and /v4.",
            "version": version,
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
