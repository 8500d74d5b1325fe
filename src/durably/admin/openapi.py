"""durably's own OpenAPI description of the admin routes it serves (GET /openapi).

Written for our routes and the response shapes in render.py; routes added through
`extra_routes` can contribute their own path items via `extra_paths`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_openapi"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("ErrorDescriptionResponse"), "Bad request"),
    "404": _json(_ref("ErrorDescriptionResponse"), "Not found"),
    "409": _json(_ref("ErrorDescriptionResponse"), "Conflict"),
    "500": _json(_ref("ErrorDescriptionResponse"), "Internal server error"),
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


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }


def _paths() -> dict[str, Any]:
    dep = _param("deployment")
    svc = _param("service")
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
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
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
                    "404": _ERRORS["404"],
                },
            },
            "delete": {
                "operationId": "delete_deployment",
                "summary": "Remove a deployment (requires force=true)",
                "parameters": [_param("force", "query", {"type": "boolean"})],
                "responses": {
                    "202": {"description": "Removed"},
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
                    "400": _ERRORS["400"],
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
                    "400": _ERRORS["400"],
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
            "description": "Deployments and services of a durably server. The same routes are "
            "served under /v2, /v3 and /v4.",
            "version": version,
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
