"""The admin API (port 9070): deployments and services, as Restate's admin API serves them.

Every route is served at the root and again under `/v2`, `/v3` and `/v4` (the restate CLI uses
`/v4/...`); any other `/vN/...` is answered like Restate does (400, "Unsupported Admin API
version"). Request-parsing failures are plain-text 400/415/422 as Restate's (axum) extractors
answer; domain errors are `{"message": ..., "restate_code": ...}` JSON.

Routes owned by other parts of durably (invocations, SQL, ...) are passed in as
`extra_routes` and get the same prefixes and error handling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from durably import __version__
from durably.admin import render
from durably.admin.openapi import build_openapi
from durably.schema.discovery_client import normalize_uri
from durably.schema.durations import DurationError, parse_duration_ms
from durably.schema.errors import AdminError
from durably.schema.ids import check_deployment_id
from durably.schema.registry import SchemaRegistry

__all__ = ["JSONResponse", "MIN_ADMIN_API_VERSION", "MAX_ADMIN_API_VERSION", "create_admin_app"]

MIN_ADMIN_API_VERSION = 2
MAX_ADMIN_API_VERSION = 4
_REGISTER_SHAPE_ERROR = "data did not match any variant of untagged enum RegisterDeploymentRequest"
_DURATION_FIELDS = (
    "idempotency_retention",
    "workflow_completion_retention",
    "journal_retention",
    "inactivity_timeout",
    "abort_timeout",
)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _PlainError(Exception):
    """A request that could not be parsed: Restate answers these with text/plain."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _error_json(e: AdminError) -> Response:
    if e.status == 501:
        # Restate answers "not implemented" (DELETE without force) with an empty body.
        return Response(status_code=501)
    return JSONResponse({"message": e.message, "restate_code": e.restate_code}, e.status)


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


def _is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _describe_json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


async def _json_body(request: Request) -> Any:
    if not _is_json_content_type(request.headers.get("content-type")):
        raise _PlainError(415, "Expected request with `Content-Type: application/json`")
    body = await request.body()
    if not body.strip():
        raise _PlainError(
            400,
            "Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 0",
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _PlainError(400, f"Failed to parse the request body as JSON: {e}") from None


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _bad_header(headers: dict[str, str]) -> str | None:
    """Why `headers` cannot be sent over HTTP (names are tokens, values visible ASCII, space
    or tab), or None. Checked here: discovery would otherwise fail encoding them (a 500)."""
    for name, value in headers.items():
        if not name or not set(name) <= _TOKEN_CHARS:
            return f"invalid HTTP header name {name!r}"
        if any(not (c == "\t" or " " <= c <= "~") for c in value):
            return f"invalid HTTP header value for {name!r}"
    return None


def _deserialize_error(detail: str) -> _PlainError:
    return _PlainError(422, f"Failed to deserialize the JSON body into the target type: {detail}")


def parse_modify_service(body: Any) -> dict[str, Any]:
    """A `PATCH /services/{service}` body -> the registry's keyword arguments (durations in
    ms); a 422 `_PlainError` worded as Restate's for a body of the wrong shape."""
    if not isinstance(body, dict):
        raise _deserialize_error(
            f"invalid type: {_describe_json_type(body)}, expected struct ModifyServiceRequest"
        )
    changes: dict[str, Any] = {}
    public = body.get("public")
    if public is not None:
        if not isinstance(public, bool):
            raise _deserialize_error(
                f"public: invalid type: {_describe_json_type(public)}, expected a boolean"
            )
        changes["public"] = public
    for key in _DURATION_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _deserialize_error(
                f"{key}: invalid type: {_describe_json_type(value)}, expected a duration string"
            )
        try:
            changes[key] = parse_duration_ms(value)
        except DurationError as e:
            raise _deserialize_error(f"{key}: {e}") from None
    return changes


def _check_deployment_param(value: str) -> None:
    reason = check_deployment_id(value)
    if reason is not None:
        raise _PlainError(
            400, f"Invalid URL: Cannot parse `deployment` with value `{value}`: {reason}"
        )


def _query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise _PlainError(
            400,
            f"Failed to deserialize query string: {name}: provided string was not `true` or `false`",
        )
    return raw == "true"


def create_admin_app(
    registry: SchemaRegistry,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    ingress_endpoint: str | None = None,
    version: str = __version__,
    extra_openapi_paths: dict[str, Any] | None = None,
    ui: Sequence[BaseRoute] = (),
    kafka: Any = None,
) -> Starlette:
    """The admin ASGI app over `registry`.

    `ingress_endpoint` is what GET /version reports (e.g. "http://127.0.0.1:8080/").
    `extra_routes` are mounted beside ours (and under /v2../v4); their OpenAPI path items can
    be given as `extra_openapi_paths`. `ui` (from `durably.ui.ui_routes`) is mounted once, at
    the root: `/` and `/ui` redirect to `/ui/`.
    """
    openapi_doc = orjson.dumps(build_openapi(version, extra_openapi_paths))

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def version_info(request: Request) -> Response:
        return JSONResponse(
            {
                "version": version,
                "min_admin_api_version": MIN_ADMIN_API_VERSION,
                "max_admin_api_version": MAX_ADMIN_API_VERSION,
                "ingress_endpoint": ingress_endpoint,
                "features": {},
            }
        )

    async def openapi(request: Request) -> Response:
        return Response(openapi_doc, media_type="application/json")

    async def list_deployments(request: Request) -> Response:
        return JSONResponse(
            {"deployments": [render.deployment_json(d) for d in registry.list_deployments()]}
        )

    async def create_deployment(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _deserialize_error(_REGISTER_SHAPE_ERROR)
        if "uri" not in body and "arn" in body:
            raise AdminError(400, "Lambda deployments (arn) are not supported by durably")
        uri = body.get("uri")
        headers = body.get("additional_headers")
        flags = {k: body.get(k) for k in ("use_http_11", "force", "breaking", "dry_run")}
        if (
            not isinstance(uri, str)
            or (
                headers is not None
                and not (
                    isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
                )
            )
            or any(v is not None and not isinstance(v, bool) for v in flags.values())
            or (body.get("metadata") is not None and not isinstance(body.get("metadata"), dict))
        ):
            raise _deserialize_error(_REGISTER_SHAPE_ERROR)
        bad_header = _bad_header(headers or {})
        if bad_header is not None:
            raise _deserialize_error(f"additional_headers: {bad_header}")
        if not uri or any(c.isspace() for c in uri):
            # Not even parseable as a URI: Restate fails deserialization here.
            raise _deserialize_error(_REGISTER_SHAPE_ERROR)
        normalize_uri(uri)  # 400 with the reason for relative or non-http(s) URIs
        deployment, services, created = await registry.register(
            uri,
            use_http_11=bool(flags["use_http_11"]),
            additional_headers=headers,
            force=bool(flags["force"]),
            breaking=bool(flags["breaking"]),
            dry_run=bool(flags["dry_run"]),
        )
        return JSONResponse(
            render.register_response_json(deployment, services),
            status_code=201 if created else 200,
            headers={"location": f"deployments/{deployment.id}"},
        )

    async def get_deployment(request: Request) -> Response:
        dep_id = request.path_params["deployment"]
        _check_deployment_param(dep_id)
        d = registry.get_deployment(dep_id)
        return JSONResponse(render.detailed_deployment_json(registry, d))

    async def delete_deployment(request: Request) -> Response:
        dep_id = request.path_params["deployment"]
        _check_deployment_param(dep_id)
        force = _query_bool(request, "force")
        if not force:
            return Response(status_code=501)
        if registry.find_deployment(dep_id) is None:
            raise AdminError(
                404, f"not found in the schema registry: deployment with id '{dep_id}'"
            )
        registry.remove_deployment(dep_id, force=True)
        return Response(status_code=202)

    async def list_services(request: Request) -> Response:
        return JSONResponse(
            {"services": [render.service_json(s) for s in registry.list_services()]}
        )

    async def get_service(request: Request) -> Response:
        return JSONResponse(
            render.service_json(registry.get_service(request.path_params["service"]))
        )

    async def modify_service(request: Request) -> Response:
        name = request.path_params["service"]
        changes = parse_modify_service(await _json_body(request))
        if not changes:
            return JSONResponse(render.service_json(registry.get_service(name)))
        return JSONResponse(render.service_json(registry.modify_service(name, **changes)))

    async def list_handlers(request: Request) -> Response:
        name = request.path_params["service"]
        service = registry.get_service(name)
        return JSONResponse(
            {"handlers": [render.handler_json(service, h) for h in service.handlers]}
        )

    async def get_handler(request: Request) -> Response:
        service, handler = registry.get_handler(
            request.path_params["service"], request.path_params["handler"]
        )
        return JSONResponse(render.handler_json(service, handler))

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version_info, methods=["GET"]),
        Route("/openapi", openapi, methods=["GET"]),
        _route("/deployments", GET=list_deployments, POST=create_deployment),
        # any characters, slashes and newlines too: an id with an encoded slash (the restate CLI
        # sends a URL given as id encoded so) gets Restate's 400 "bad format", not an empty 404
        _route("/deployments/{deployment:anything}", GET=get_deployment, DELETE=delete_deployment),
        Route("/services", list_services, methods=["GET"]),
        _route("/services/{service}", GET=get_service, PATCH=modify_service),
        Route("/services/{service}/handlers", list_handlers, methods=["GET"]),
        Route("/services/{service}/handlers/{handler}", get_handler, methods=["GET"]),
        *_kafka_routes(kafka),
        *extra_routes,
    ]

    async def unsupported_version(request: Request) -> Response:
        n = request.path_params["n"]
        return _plain(
            400,
            f"Unsupported Admin API version V{n}. This server supports versions between "
            f"V{MIN_ADMIN_API_VERSION} and V{MAX_ADMIN_API_VERSION}.",
        )

    all_routes: list[BaseRoute] = [
        *routes,
        *(
            Mount(f"/v{n}", routes=routes)
            for n in range(MIN_ADMIN_API_VERSION, MAX_ADMIN_API_VERSION + 1)
        ),
        Route("/v{n:int}", unsupported_version, methods=_ALL_METHODS),
        Route("/v{n:int}/{rest:path}", unsupported_version, methods=_ALL_METHODS),
        *ui,
    ]

    async def on_admin_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminError)
        return _error_json(exc)

    async def on_plain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _PlainError)
        return _plain(exc.status, exc.text)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if "Allow" in headers:
            # Restate prints `allow: GET,HEAD`.
            methods = [m.strip() for m in headers["Allow"].split(",")]
            order = {"GET": 0, "HEAD": 1}
            methods.sort(key=lambda m: order.get(m, 2))
            headers["Allow"] = ",".join(methods)
        return Response(status_code=exc.status_code, headers=headers)

    app = Starlette(
        routes=all_routes,
        exception_handlers={
            AdminError: on_admin_error,
            _PlainError: on_plain_error,
            HTTPException: on_http_error,
        },
    )
    app.state.registry = registry
    return app


class _Anything(Convertor[str]):
    """A path parameter of any characters (Starlette's `path` stops at a newline)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anything", _Anything())


def _kafka_routes(kafka: Any) -> list[BaseRoute]:
    """`/kafka-clusters`, `/subscriptions` (durably.kafka), when the server runs them."""
    if kafka is None:
        return []
    from durably.kafka.admin import kafka_routes

    return list(kafka_routes(kafka))


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _route(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route, several methods: so that a 405 lists every method the path allows."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))
