"""Parsing the ingress URL forms into routes (pure; the app decides what to do with them).

Service-call paths are ambiguous until the service type is known (`/Svc/a/b` is a keyed
call of handler `b` on key `a`, or a send of handler `a` on a plain service), so those are
returned as raw segments and resolved by `resolve_invoke` with the service's type.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

BAD_INVOKE_PATH = (
    "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
)


class PathError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Health:
    pass


@dataclass(frozen=True, slots=True)
class Invoke:
    """Not yet resolved: `segments` after the service name; `forced_send` for /restate/send."""

    service: str
    segments: tuple[str, ...]
    forced: str | None = None  # "call" | "send" from the /restate/call|send forms


@dataclass(frozen=True, slots=True)
class ResolvedInvoke:
    service: str
    key: str | None
    handler: str
    send: bool


@dataclass(frozen=True, slots=True)
class Awakeable:
    awakeable_id: str
    action: str  # resolve | reject


@dataclass(frozen=True, slots=True)
class ById:
    invocation_id: str
    action: str  # attach | output


@dataclass(frozen=True, slots=True)
class ByIdempotencyKey:
    service: str
    key: str | None
    handler: str
    idempotency_key: str
    action: str


@dataclass(frozen=True, slots=True)
class ByWorkflow:
    workflow: str
    workflow_id: str
    action: str


@dataclass(frozen=True, slots=True)
class ByTargetBody:
    action: str  # attach | output | lookup


Route = Health | Invoke | Awakeable | ById | ByIdempotencyKey | ByWorkflow | ByTargetBody

_ACTIONS = ("attach", "output")


def parse(path: str) -> Route:
    raw = path.split("?", 1)[0]
    raw_parts = raw.strip("/").split("/") if raw.strip("/") else []
    parts = [unquote(p) for p in raw_parts]
    if not parts:
        raise PathError(400, f"bad path: {raw or '/'}")
    if parts[0] != "restate":
        if len(parts) < 2 or len(parts) > 4:
            raise PathError(400, BAD_INVOKE_PATH)
        return Invoke(parts[0], tuple(parts[1:]))
    rest = parts[1:]
    if rest == ["health"]:
        return Health()
    if not rest:
        raise PathError(400, f"bad path: {raw}")
    verb, args = rest[0], rest[1:]
    if verb in ("awakeables", "a") and len(args) == 2 and args[1] in ("resolve", "reject"):
        return Awakeable(args[0], args[1])
    if verb == "invocation":
        if len(args) == 2 and args[1] in _ACTIONS:
            return ById(args[0], args[1])
        # Restate takes the idempotency key segment verbatim (it URL-decodes the service,
        # key and handler segments, not this one): `k%20x` names the key "k%20x".
        if len(args) == 4 and args[3] in _ACTIONS:
            return ByIdempotencyKey(args[0], None, args[1], raw_parts[4], args[3])
        if len(args) == 5 and args[4] in _ACTIONS:
            return ByIdempotencyKey(args[0], args[1], args[2], raw_parts[5], args[4])
    if verb == "workflow" and len(args) == 3 and args[2] in _ACTIONS:
        return ByWorkflow(args[0], args[1], args[2])
    if verb in ("call", "send") and len(args) in (2, 3):
        return Invoke(args[0], tuple(args[1:]), forced=verb)
    if verb in _ACTIONS and len(args) == 1:
        return ById(args[0], verb)
    if verb in (*_ACTIONS, "lookup") and not args:
        return ByTargetBody(verb)
    raise PathError(400, f"bad path: {raw}")


def resolve_invoke(route: Invoke, keyed: bool) -> ResolvedInvoke:
    """Split the segments of an invoke path with the knowledge of the service type."""
    segs = list(route.segments)
    if route.forced is not None:
        if keyed != (len(segs) == 2):
            raise PathError(400, BAD_INVOKE_PATH)
        key = segs[0] if keyed else None
        return ResolvedInvoke(route.service, key, segs[-1], route.forced == "send")
    send = False
    expected = 2 if keyed else 1
    if len(segs) == expected + 1 and segs[-1] == "send":
        send = True
        segs = segs[:-1]
    if len(segs) != expected:
        raise PathError(400, BAD_INVOKE_PATH)
    if keyed:
        return ResolvedInvoke(route.service, segs[0], segs[1], send)
    return ResolvedInvoke(route.service, None, segs[0], send)
