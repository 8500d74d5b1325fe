"""Admin routes that act on invocations: cancel, kill, purge, purge-journal, pause,
resume, restart-as-new; and `GET /invocations/{id}` (durably's own: the invocation's
status, including a deadlock it is part of).

Status codes and messages follow Restate 1.7 (checked against the real server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from durably.admin.render import format_timestamp
from durably.engine.model import Result
from durably.ids import InvocationId
from durably.storage.base import InvocationRow
from durably.storage.introspection import RESTATE_STATUS

if TYPE_CHECKING:
    from durably.engine.engine import Engine

# (action, outcome) -> (status, message template); "*" matches any action
_REFUSALS: dict[tuple[str, str], tuple[int, str]] = {
    ("*", "unknown"): (404, "The invocation '{id}' was not found."),
    ("*", "completed"): (409, "The invocation '{id}' was already completed."),
    ("*", "not-completed"): (409, "The invocation '{id}' is not yet completed."),
    ("pause", "not-running"): (409, "The invocation '{id}' is not running, cannot be paused."),
    ("resume", "completed"): (409, "The invocation '{id}' is completed, cannot be resumed."),
    ("resume", "not-started"): (
        425, "The invocation '{id}' is either inboxed or scheduled, cannot be resumed."),
    ("resume", "running"): (
        409, "The invocation '{id}' is still running, the deployment id cannot be changed."),
    ("*", "bad-deployment"): (400, "The deployment '{deployment}' cannot run this invocation."),
    ("restart-as-new", "not-started"): (
        425, "The invocation '{id}' cannot be restarted because it's not running yet."),
    ("restart-as-new", "running"): (409, "The invocation '{id}' is still running."),
    ("restart-as-new", "workflow"): (
        422, "Restarting the invocation '{id}' is not supported. Restarting workflows is not "
        "supported."),
    ("restart-as-new", "journal-gone"): (
        410, "The invocation '{id}' cannot be restarted because the input is not available. "
        "This indicates that the journal was already purged, or not retained at all."),
    ("restart-as-new", "incomplete-prefix"): (
        400, "The prefix of the journal '{id}' up to 'from' (included) contains some Commands "
        "without respective Completions."),
    ("restart-as-new", "no-target"): (
        404, "The service or handler of the invocation '{id}' is no longer registered."),
}
ACTIONS = ("cancel", "kill", "purge", "purge-journal", "pause", "resume", "restart-as-new")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


def _refusal(action: str, outcome: str, **fields: str) -> JSONResponse | None:
    found = _REFUSALS.get((action, outcome)) or _REFUSALS.get(("*", outcome))
    if found is None:
        return None
    status, template = found
    return _error(status, template.format(**fields))


def invocation_view(engine: Engine, row: InvocationRow) -> dict[str, Any]:
    def ts(ms: int | None) -> str | None:
        return format_timestamp(ms) if ms else None

    view: dict[str, Any] = {
        "id": row.id,
        "target": (f"{row.service}/{row.handler}" if row.key is None
                   else f"{row.service}/{row.key}/{row.handler}"),
        "target_service_name": row.service,
        "target_service_key": row.key,
        "target_handler_name": row.handler,
        "target_service_ty": row.service_ty,
        "status": RESTATE_STATUS.get(row.status, row.status),  # as sys_invocation shows it
        "idempotency_key": row.idempotency_key,
        "invoked_by": row.invoked_by,
        "invoked_by_id": row.invoked_by_id,
        "invoked_by_target": row.invoked_by_target,
        "restarted_from": row.extra.get("restarted_from"),
        "pinned_deployment_id": row.deployment_id,
        "pinned_service_protocol_version": row.protocol_version,
        "journal_size": row.journal_length,
        "retry_count": row.retry_count,
        "last_failure": row.last_failure,
        "last_failure_error_code": row.last_failure_code,
        "next_retry_at": ts(row.next_retry_at),
        "created_at": ts(row.created_at),
        "modified_at": ts(row.modified_at),
        "inboxed_at": ts(row.inboxed_at),
        "scheduled_start_at": ts(row.execution_time),
        "running_at": ts(row.running_at),
        "completed_at": ts(row.completed_at),
        "completion_expires_at": ts(row.expires_at),
        "deadlock": row.extra.get("deadlock"),
    }
    if row.result is not None:
        result = Result.decode(row.result)
        view["completion_result"] = "success" if result.failure is None else "failure"
        if result.failure is not None:
            view["completion_failure"] = result.failure.to_json_dict()
    return view


async def perform(engine: Engine, inv_id: str, action: str, params: Any) -> Response:
    """One action on one invocation, answered as the admin API answers it (the web UI acts
    through this too, so both give the same outcome for the same request)."""
    deployment = params.get("deployment")
    body: dict[str, Any] | None = None
    if action == "cancel":
        outcome = engine.cancel(inv_id)
    elif action == "kill":
        outcome = engine.kill(inv_id)
    elif action == "purge":
        outcome = engine.purge(inv_id)
    elif action == "purge-journal":
        outcome = engine.purge_journal(inv_id)
    elif action == "pause":
        outcome = engine.pause(inv_id)
    elif action == "resume":
        outcome = engine.resume(inv_id, deployment)
    elif action == "restart-as-new":
        raw_from = params.get("from")
        from_index: int | None = None
        if raw_from not in (None, ""):
            try:
                from_index = int(raw_from)
                if from_index < 0:
                    raise ValueError
            except ValueError:
                return _error(400, f"The query parameter 'from' is invalid: '{raw_from}'")
        outcome, new_id = engine.restart_as_new(inv_id, from_index, deployment)
        body = {"new_invocation_id": new_id}
    else:
        return _error(404, f"unknown action '{action}'")
    refused = _refusal(action, outcome, id=inv_id, deployment=str(deployment))
    if refused is not None:
        return refused
    await engine.committed()
    if body is not None:
        return JSONResponse(body)
    if outcome == "appended" or (action == "pause" and outcome == "done"):
        return Response(status_code=202)
    return Response(status_code=200)


def invocation_routes(engine: Engine) -> list[Route]:
    def parse_id(request: Request) -> str | JSONResponse:
        inv_id = str(request.path_params["invocation_id"])
        try:
            InvocationId.parse(inv_id)
        except ValueError:
            return _error(
                400, f"The request field 'invocation_id' is invalid. Reason: bad format '{inv_id}'"
            )
        return inv_id

    async def act(inv_id: str, action: str, params: Any) -> Response:
        return await perform(engine, inv_id, action, params)

    async def patch(request: Request) -> Response:
        inv_id = parse_id(request)
        if isinstance(inv_id, Response):
            return inv_id
        return await act(inv_id, str(request.path_params["action"]), request.query_params)

    async def delete(request: Request) -> Response:
        inv_id = parse_id(request)
        if isinstance(inv_id, Response):
            return inv_id
        mode = request.query_params.get("mode", "cancel").lower()
        if mode not in ("cancel", "kill", "purge"):
            return _error(400, f"unknown mode '{mode}'")
        response = await act(inv_id, mode, {})
        if response.status_code < 300:
            return Response(status_code=202)
        return response

    async def describe(request: Request) -> Response:
        inv_id = parse_id(request)
        if isinstance(inv_id, Response):
            return inv_id
        row = engine.lookup(inv_id)
        if row is None:
            return _error(404, f"The invocation '{inv_id}' was not found.")
        return JSONResponse(invocation_view(engine, row))

    async def by_id(request: Request) -> Response:
        return await (delete if request.method == "DELETE" else describe)(request)

    routes: list[Any] = [
        Route("/invocations/{invocation_id}/{action}", patch, methods=["PATCH"]),
        # one route for both methods: a 405 then lists both in its Allow header
        Route("/invocations/{invocation_id}", by_id, methods=["GET", "DELETE"]),
    ]
    return routes
