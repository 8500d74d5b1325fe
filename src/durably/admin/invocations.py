"""Admin routes that act on invocations: cancel, kill, purge, resume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from durably.ids import InvocationId

if TYPE_CHECKING:
    from durably.engine.engine import Engine


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


def invocation_routes(engine: Engine) -> list[Route]:
    def parse_id(request: Request) -> str | JSONResponse:
        inv_id = str(request.path_params["invocation_id"])
        try:
            InvocationId.parse(inv_id)
        except ValueError:
            return _error(400, f"bad invocation id '{inv_id}'")
        return inv_id

    async def act(inv_id: str, action: str) -> Response:
        if action == "cancel":
            outcome = engine.cancel(inv_id)
        elif action == "kill":
            outcome = engine.kill(inv_id)
        elif action == "purge":
            outcome = engine.purge(inv_id)
        elif action == "resume":
            outcome = "done" if engine.resume(inv_id) else (
                "unknown" if engine.lookup(inv_id) is None else "not-paused"
            )
        else:
            return _error(404, f"unknown action '{action}'")
        if outcome == "unknown":
            return _error(404, f"invocation {inv_id} not found")
        if outcome == "completed":
            return _error(409, f"invocation {inv_id} is already completed")
        if outcome == "not-completed":
            return _error(409, f"invocation {inv_id} is not completed yet")
        if outcome == "not-paused":
            return _error(409, f"invocation {inv_id} is not paused")
        await engine.committed()
        return Response(status_code=202 if outcome == "appended" else 200)

    async def patch(request: Request) -> Response:
        inv_id = parse_id(request)
        if isinstance(inv_id, Response):
            return inv_id
        return await act(inv_id, str(request.path_params["action"]))

    async def delete(request: Request) -> Response:
        inv_id = parse_id(request)
        if isinstance(inv_id, Response):
            return inv_id
        mode = request.query_params.get("mode", "cancel")
        if mode not in ("cancel", "kill", "purge"):
            return _error(400, f"unknown mode '{mode}'")
        response = await act(inv_id, mode)
        if response.status_code < 300:
            return Response(status_code=202)
        return response

    routes: list[Any] = [
        Route("/invocations/{invocation_id}/{action}", patch, methods=["PATCH"]),
        Route("/invocations/{invocation_id}", delete, methods=["DELETE"]),
    ]
    return routes
