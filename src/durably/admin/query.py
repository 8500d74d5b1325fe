"""`POST /query`: SQL introspection over Restate's `sys_*` tables (see storage.introspection).

`Accept: application/json` answers `{"rows": [...]}` as Restate does (NULL columns left out).
Any other Accept gets an Arrow IPC stream (what Restate answers by default, and what the
official `restate` CLI decodes for its counts), written by `admin.arrow` without pyarrow.

Queries run in a worker thread on their own read-only connection, so the engine's event loop
and its writer never wait for them.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durably.admin.arrow import arrow_stream
from durably.storage.introspection import (
    Introspector,
    QueryError,
    QueryRefused,
    rows_as_json,
)

__all__ = ["query_routes"]

_ARROW = "application/vnd.apache.arrow.stream"


def _message(status: int, message: str) -> Response:
    return Response(
        orjson.dumps({"message": message}), status_code=status, media_type="application/json"
    )


def _wants_json(accept: str | None) -> bool:
    if not accept:
        return False
    return any(
        part.split(";", 1)[0].strip().lower() == "application/json" for part in accept.split(",")
    )


def query_routes(introspector: Introspector) -> list[Route]:
    # SQLite work is CPU-bound Python/C: one query at a time keeps the engine's loop fed
    # (the GIL is shared) while still never blocking it.
    gate = asyncio.Semaphore(2)

    async def query(request: Request) -> Response:
        # as Restate: a JSON body only, which also keeps cross-site HTML forms (text/plain,
        # form-encoded) from running queries with a browser's credentials
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return Response(
                "Expected request with `Content-Type: application/json`",
                status_code=415,
                media_type="text/plain",
            )
        body = await request.body()
        try:
            doc = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError as e:
            return Response(
                f"Failed to parse the request body as JSON: {e}",
                status_code=400,
                media_type="text/plain",
            )
        sql = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(sql, str):
            return Response(
                "Failed to deserialize the JSON body into the target type: "
                "missing field `query`",
                status_code=422,
                media_type="text/plain",
            )
        if not sql.strip():
            return _message(400, "SQL error: the query is empty")
        async with gate:
            try:
                result = await asyncio.to_thread(introspector.query, sql)
            except QueryRefused as e:
                return _message(400, f"Query refused: {e}")
            except QueryError as e:
                return _message(400, f"SQL error: {e}")
        if _wants_json(request.headers.get("accept")):
            return Response(
                orjson.dumps({"rows": rows_as_json(result)}), media_type="application/json"
            )
        return Response(arrow_stream(result), media_type=_ARROW)

    return [Route("/query", query, methods=["POST"])]
