"""Admin routes of Kafka subscriptions, as Restate 1.7 answers them, plus durably's parked
records (`/kafka-parked-records`), and their OpenAPI path items.

Body-parsing failures are plain text (415/400/422) like the rest of the admin API; domain
errors are `{"message", "restate_code"}` JSON raised as `AdminError`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from durably.admin.render import format_timestamp
from durably.kafka.model import (
    BadRequest,
    KafkaCluster,
    check_cluster_name,
    string_map,
    valid_subscription_id,
)
from durably.schema.errors import AdminError
from durably.storage.base import ParkedRecordRow

if TYPE_CHECKING:
    from durably.kafka.service import KafkaSubscriptions

__all__ = ["kafka_routes", "openapi_paths", "openapi_schemas"]

_STATIC_INFO = (
    "This Kafka cluster was given on the command line (durably serve --kafka-cluster); "
    "it cannot be changed or deleted through the API."
)


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers,
                    media_type="application/json")


class _Plain(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def _body(request: Request) -> dict[str, Any]:
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise _Plain(415, "Expected request with `Content-Type: application/json`")
    raw = await request.body()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _Plain(400, f"Failed to parse the request body as JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _unprocessable("invalid type: expected a map")
    return doc


def _unprocessable(detail: str) -> _Plain:
    return _Plain(422, f"Failed to deserialize the JSON body into the target type: {detail}")


def _field(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise _unprocessable(f"missing field `{name}`")
    return doc[name]


def _cluster_json(c: KafkaCluster) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "properties": c.properties,
        "created_at": format_timestamp(c.created_at),
    }
    if c.static:
        out["info"] = [{"message": _STATIC_INFO}]
    return out


def parked_json(row: ParkedRecordRow) -> dict[str, Any]:
    def text(b: bytes | None) -> str | None:
        if b is None:
            return None
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return None

    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "topic": row.topic,
        "partition": row.partition,
        "offset": row.offset,
        "key": None if row.key is None else base64.urlsafe_b64encode(row.key).decode(),
        "key_utf8": text(row.key),
        "value_length": 0 if row.value is None else len(row.value),
        "timestamp": row.timestamp,
        "error": row.error,
        "parked_at": format_timestamp(row.parked_at),
    }


def kafka_routes(kafka: KafkaSubscriptions) -> list[Route]:
    def guarded(fn: Any) -> Any:
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)  # type: ignore[no-any-return]
            except _Plain as e:
                return PlainTextResponse(e.text, status_code=e.status)
            except BadRequest as e:
                return PlainTextResponse(
                    f"Failed to deserialize the JSON body into the target type: {e}",
                    status_code=422,
                )

        return handler

    # -- clusters ----------------------------------------------------------------------

    async def list_clusters(request: Request) -> Response:
        return _json({"clusters": [_cluster_json(c) for c in kafka.clusters()]})

    async def create_cluster(request: Request) -> Response:
        doc = await _body(request)
        name = check_cluster_name(_field(doc, "name"))
        properties = string_map(_field(doc, "properties"), "properties")
        cluster = await kafka.create_cluster(name, properties)
        return _json(_cluster_json(cluster), 201, {"location": f"kafka-clusters/{name}"})

    async def get_cluster(request: Request) -> Response:
        name = request.path_params["name"]
        cluster = kafka.cluster(name)
        if cluster is None:
            raise AdminError(404, f"The requested Kafka cluster '{name}' does not exist")
        out = _cluster_json(cluster)
        out["subscriptions"] = [s.json() for s in kafka.subscriptions_of(name)]
        return _json(out)

    async def update_cluster(request: Request) -> Response:
        doc = await _body(request)
        properties = string_map(_field(doc, "properties"), "properties")
        cluster = await kafka.update_cluster(request.path_params["name"], properties)
        return _json(_cluster_json(cluster))

    async def delete_cluster(request: Request) -> Response:
        await kafka.delete_cluster(request.path_params["name"])
        return Response(status_code=202)

    # -- subscriptions -----------------------------------------------------------------

    def sub_id_of(request: Request) -> str:
        value = str(request.path_params["subscription"])
        if not valid_subscription_id(value):
            raise _Plain(
                400, f"Invalid URL: Cannot parse `subscription` with value `{value}`: bad format"
            )
        return value

    async def list_subscriptions(request: Request) -> Response:
        sink = request.query_params.get("sink")
        source = request.query_params.get("source")
        subs = [
            s.json()
            for s in kafka.subscriptions()
            if (sink is None or s.sink == sink) and (source is None or s.source == source)
        ]
        return _json({"subscriptions": subs})

    async def create_subscription(request: Request) -> Response:
        doc = await _body(request)
        source = _field(doc, "source")
        sink = _field(doc, "sink")
        if not isinstance(source, str) or not isinstance(sink, str):
            raise _unprocessable("source, sink: invalid type: expected a string")
        options = doc.get("options")
        options = {} if options is None else string_map(options, "options")
        sub = await kafka.create_subscription(source, sink, options)
        return _json(sub.json(), 201, {"location": f"subscriptions/{sub.id}"})

    async def get_subscription(request: Request) -> Response:
        sub_id = sub_id_of(request)
        sub = kafka.subscription(sub_id)
        if sub is None:
            raise AdminError(404, f"The requested subscription '{sub_id}' does not exist")
        return _json(sub.json())

    async def delete_subscription(request: Request) -> Response:
        await kafka.delete_subscription(sub_id_of(request))
        return Response(status_code=202)

    # -- parked records (durably's own) ------------------------------------------------

    def record_id_of(request: Request) -> int:
        value = str(request.path_params["record"])
        if not value.isdigit():
            raise _Plain(400, f"Invalid URL: Cannot parse `record` with value `{value}`")
        return int(value)

    async def list_parked(request: Request) -> Response:
        try:
            rows = await kafka.all_parked(request.query_params.get("subscription"))
        except (TimeoutError, OSError) as e:  # the database away or black-holed
            raise AdminError(
                503, f"Could not read the parked records from the database: {e or 'no answer'}"
            ) from None
        return _json({"records": [parked_json(r) for r in rows]})

    async def replay_parked(request: Request) -> Response:
        invocation_id = await kafka.replay(record_id_of(request))
        return _json({"invocation_id": invocation_id})

    async def drop_parked(request: Request) -> Response:
        await kafka.drop(record_id_of(request))
        return Response(status_code=202)

    def route(path: str, **handlers: Any) -> Route:
        wrapped = {m: guarded(h) for m, h in handlers.items()}

        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await wrapped[method](request)  # type: ignore[no-any-return]

        return Route(path, dispatch, methods=list(handlers))

    return [
        route("/kafka-clusters", GET=list_clusters, POST=create_cluster),
        route("/kafka-clusters/{name}", GET=get_cluster, PATCH=update_cluster,
              DELETE=delete_cluster),
        route("/subscriptions", GET=list_subscriptions, POST=create_subscription),
        route("/subscriptions/{subscription}", GET=get_subscription, DELETE=delete_subscription),
        route("/kafka-parked-records", GET=list_parked),
        route("/kafka-parked-records/{record}", DELETE=drop_parked),
        route("/kafka-parked-records/{record}/replay", POST=replay_parked),
    ]


# -- OpenAPI ---------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: str | None, description: str) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_ERR = {
    code: _answer("ErrorDescriptionResponse", text)
    for code, text in (("400", "Bad request"), ("404", "Not found"), ("409", "Conflict"),
                       ("500", "Internal server error"))
}
# request-parsing failures (a bad id, a body that is not JSON) answer plain text, as the
# admin API's own routes do (found by tests/abuse/test_fuzz_http.py)
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ERR["400"] = {**_ERR["400"], "content": {**_ERR["400"]["content"], **_TEXT}}
_BODY_ERR = {
    "415": {"description": "The body is not `Content-Type: application/json`", "content": _TEXT},
    "422": {"description": "The JSON body does not have the expected shape", "content": _TEXT},
}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


def _op(op_id: str, tag: str, summary: str, ok: str, schema: str | None,
        body: str | None = None, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": [tag], "operationId": op_id, "summary": summary,
                           "responses": {ok: _answer(schema, summary), **_ERR}}
    if body is not None:
        out["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": _ref(body)}}}
        out["responses"].update(_BODY_ERR)
    if params:
        out["parameters"] = params
    return out


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def openapi_paths() -> dict[str, Any]:
    cluster = [_path_param("cluster_name", "Kafka cluster name")]
    sub = [_path_param("subscription", "Subscription identifier")]
    record = [_path_param("record", "Parked record id")]
    filters = [
        {"name": n, "in": "query", "required": False, "schema": {"type": ["string", "null"]},
         "description": f"Filter by the exact specified {n}."}
        for n in ("sink", "source")
    ]
    return {
        "/kafka-clusters": {
            "get": _op("list_kafka_clusters", "kafka_cluster", "List Kafka clusters", "200",
                       "ListKafkaClustersResponse"),
            "post": _op("create_kafka_cluster", "kafka_cluster", "Create a Kafka cluster",
                        "201", "SimpleKafkaClusterResponse", "CreateKafkaClusterRequest"),
        },
        "/kafka-clusters/{cluster_name}": {
            "get": _op("get_kafka_cluster", "kafka_cluster", "Get a Kafka cluster", "200",
                       "KafkaClusterResponse", params=cluster),
            "patch": _op("update_kafka_cluster", "kafka_cluster", "Update a Kafka cluster",
                         "200", "SimpleKafkaClusterResponse", "UpdateKafkaClusterRequest",
                         cluster),
            "delete": _op("delete_kafka_cluster", "kafka_cluster",
                          "Delete a Kafka cluster and its subscriptions", "202", None,
                          params=cluster),
        },
        "/subscriptions": {
            "get": _op("list_subscriptions", "subscription", "List subscriptions", "200",
                       "ListSubscriptionsResponse", params=filters),
            "post": _op("create_subscription", "subscription", "Create a subscription", "201",
                        "SubscriptionResponse", "CreateSubscriptionRequest"),
        },
        "/subscriptions/{subscription}": {
            "get": _op("get_subscription", "subscription", "Get a subscription", "200",
                       "SubscriptionResponse", params=sub),
            "delete": _op("delete_subscription", "subscription",
                          "Delete a subscription (its consumer stops)", "202", None,
                          params=sub),
        },
        "/kafka-parked-records": {
            "get": _op("list_parked_records", "subscription",
                       "Records that could not become invocations (durably)", "200",
                       "ListParkedRecordsResponse",
                       params=[{"name": "subscription", "in": "query", "required": False,
                                "schema": {"type": "string"}}]),
        },
        "/kafka-parked-records/{record}": {
            "delete": _op("drop_parked_record", "subscription", "Drop a parked record",
                          "202", None, params=record),
        },
        "/kafka-parked-records/{record}/replay": {
            "post": _op("replay_parked_record", "subscription",
                        "Deliver a parked record again", "200", "ReplayParkedRecordResponse",
                        params=record),
        },
    }


def openapi_schemas() -> dict[str, Any]:
    cluster_props = {"name": {"type": "string"}, "properties": _STRINGS,
                     "created_at": {"type": "string"},
                     "info": {"type": "array", "items": {"type": "object"}}}
    subscription = {
        "type": "object", "required": ["id", "source", "sink", "options"],
        "properties": {"id": {"type": "string"}, "source": {"type": "string"},
                       "sink": {"type": "string"}, "options": _STRINGS},
    }
    return {
        "CreateKafkaClusterRequest": {
            "type": "object", "required": ["name", "properties"],
            "properties": {"name": {"type": "string"}, "properties": _STRINGS},
        },
        "UpdateKafkaClusterRequest": {
            "type": "object", "required": ["properties"], "properties": {"properties": _STRINGS},
        },
        "SimpleKafkaClusterResponse": {
            "type": "object", "required": ["name", "properties", "created_at"],
            "properties": cluster_props,
        },
        "KafkaClusterResponse": {
            "type": "object", "required": ["name", "properties", "created_at", "subscriptions"],
            "properties": {**cluster_props,
                           "subscriptions": {"type": "array", "items": _ref("SubscriptionResponse")}},
        },
        "ListKafkaClustersResponse": {
            "type": "object", "required": ["clusters"],
            "properties": {"clusters": {"type": "array",
                                        "items": _ref("SimpleKafkaClusterResponse")}},
        },
        "CreateSubscriptionRequest": {
            "type": "object", "required": ["source", "sink"],
            "properties": {"source": {"type": "string", "format": "uri"},
                           "sink": {"type": "string", "format": "uri"},
                           "options": {**_STRINGS, "type": ["object", "null"]}},
        },
        "SubscriptionResponse": subscription,
        "ListSubscriptionsResponse": {
            "type": "object", "required": ["subscriptions"],
            "properties": {"subscriptions": {"type": "array",
                                             "items": _ref("SubscriptionResponse")}},
        },
        "ListParkedRecordsResponse": {
            "type": "object", "required": ["records"],
            "properties": {"records": {"type": "array", "items": {"type": "object"}}},
        },
        "ReplayParkedRecordResponse": {
            "type": "object",
            "properties": {"invocation_id": {"type": ["string", "null"]}},
        },
    }
