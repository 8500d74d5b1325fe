"""OpenTelemetry traces of invocations: `durably serve --tracing-endpoint URL`.

Spans, exported over OTLP (HTTP/protobuf) by the OpenTelemetry SDK (``durably[tracing]``):

* ``invocation <target>``: one per invocation, from its creation (the ingress request, or
  the call of another handler) to its completion. Its parent is the ingress caller's
  ``traceparent``, or the calling handler's attempt span, so that a chain of calls is one
  trace.
* ``attempt <target>``: one per attempt, a child of the invocation span, ending when the
  attempt completes, suspends or fails (then with an error status). Its context goes to
  the service as the ``traceparent`` header of the attempt's request (as Restate does),
  where the SDK exposes it in ``ctx.request().attempt_headers``.
* events on the attempt span for each journal action the handler takes (``call``,
  ``one_way_call``, ``sleep``, ``run``, ``complete_promise``, ``complete_awakeable``, ...)
  and for each completion it receives (``call completed``, ``sleep completed``,
  ``get_promise completed``, ``signal received`` for an awakeable, ...).

Attribute names are Restate's: ``restate.invocation.id``, ``restate.invocation.target``
(``Service/handler`` or ``Service/key/handler``), ``rpc.system``/``rpc.service``/
``rpc.method``, ``restate.deployment.id``, ``restate.invocation.result`` and
``restate.error.code``.

The invocation span's context is stored with the invocation (``row.extra``), so that the
attempts made after a restart of the server continue the same trace.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from durably import __version__
from durably.engine.attempt import Attempt
from durably.engine.model import ActiveInvocation, Failure
from durably.protocol.messages import MessageType

log = logging.getLogger("durably.tracing")

INVOCATION_ID = "restate.invocation.id"
INVOCATION_TARGET = "restate.invocation.target"
DEPLOYMENT_ID = "restate.deployment.id"
INVOCATION_RESULT = "restate.invocation.result"
ERROR_CODE = "restate.error.code"

_TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()

# journal messages that are no action of the handler's own
_NOT_EVENTS = frozenset({
    MessageType.END, MessageType.SUSPENSION, MessageType.ERROR, MessageType.OUTPUT_COMMAND,
    MessageType.GET_EAGER_STATE_COMMAND, MessageType.GET_EAGER_STATE_KEYS_COMMAND,
})


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector: ``/v1/traces`` unless a path is given."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the tracing endpoint must be an http(s) URL, not {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def target_of(inv: ActiveInvocation) -> str:
    t = inv.target
    return f"{t.service}/{t.handler}" if t.key is None else f"{t.service}/{t.key}/{t.handler}"


def _name(msg_type: int) -> str:
    try:
        name = MessageType(msg_type).name.lower()
    except ValueError:
        return f"custom 0x{msg_type:04x}"
    return name.removesuffix("_command").removesuffix("_notification")


class Tracing:
    """The engine's observer (engine/observer.py) that turns lifecycles into spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("durably", __version__)
        self._invocations: dict[str, Span] = {}
        self._attempts: dict[str, Span] = {}  # invocation id -> its open attempt's span

    # -- lifecycle ------------------------------------------------------------------------

    def invocation_created(
        self,
        inv: ActiveInvocation,
        headers: list[tuple[str, str]],
        caller: ActiveInvocation | None,
    ) -> None:
        if caller is not None:
            parent_span = self._attempts.get(caller.id) or self._invocations.get(caller.id)
            context = trace.set_span_in_context(parent_span) if parent_span else None
            if context is None:
                context = self._stored_context(caller)
        else:
            carrier = {k.lower(): v for k, v in headers if k.lower() in ("traceparent", "tracestate")}
            context = _propagator.extract(carrier) if carrier else None
        target = target_of(inv)
        span = self.tracer.start_span(
            f"invocation {target}",
            context=context,
            kind=SpanKind.SERVER if caller is None else SpanKind.INTERNAL,
            attributes={
                INVOCATION_ID: inv.id,
                INVOCATION_TARGET: target,
                "rpc.system": "restate",
                "rpc.service": inv.target.service,
                "rpc.method": inv.target.handler,
                "restate.invocation.invoked_by": inv.row.invoked_by,
            },
        )
        self._invocations[inv.id] = span
        inv.row.extra[_TRACEPARENT] = _traceparent(span)

    def attempt_started(self, inv: ActiveInvocation, attempt: Attempt) -> None:
        self._end_attempt(inv.id, "superseded", None)
        parent = self._invocations.get(inv.id)
        context = trace.set_span_in_context(parent) if parent else self._stored_context(inv)
        target = target_of(inv)
        span = self.tracer.start_span(
            f"attempt {target}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                INVOCATION_ID: inv.id,
                INVOCATION_TARGET: target,
                DEPLOYMENT_ID: attempt.deployment_id,
                "rpc.system": "restate",
                "rpc.service": inv.target.service,
                "rpc.method": inv.target.handler,
                "restate.invocation.attempt": attempt.seq,
            },
        )
        self._attempts[inv.id] = span
        # the deployment's headers are shared by its attempts: give this one its own copy
        attempt.additional_headers = {**attempt.additional_headers,
                                      _TRACEPARENT: _traceparent(span)}

    def journal_message(
        self, inv: ActiveInvocation, attempt: Attempt, msg_type: int, msg: object
    ) -> None:
        if msg_type in _NOT_EVENTS:
            return
        span = self._attempts.get(inv.id)
        if span is None:
            return
        attributes: dict[str, Any] = {}
        name = getattr(msg, "name", None)
        if isinstance(name, str) and name:
            attributes["restate.journal.entry.name"] = name
        service = getattr(msg, "service_name", None)
        if isinstance(service, str) and service:
            handler = getattr(msg, "handler_name", "")
            key = getattr(msg, "key", "")
            attributes["restate.journal.call.target"] = (
                f"{service}/{key}/{handler}" if key else f"{service}/{handler}"
            )
        if msg_type == MessageType.PROPOSE_RUN_COMPLETION:
            failed = getattr(msg, "WhichOneof", lambda _: None)("result") == "failure"
            span.add_event("run completed", {"restate.run.failed": failed})
            return
        span.add_event(_name(msg_type), attributes)

    def notification(self, inv: ActiveInvocation, msg_type: int) -> None:
        if msg_type in (MessageType.CALL_INVOCATION_ID_COMPLETION,
                        MessageType.GET_LAZY_STATE_COMPLETION,
                        MessageType.GET_LAZY_STATE_KEYS_COMPLETION):
            return  # answers to the handler's own command, not something that happened
        span = self._attempts.get(inv.id) or self._invocations.get(inv.id)
        if span is not None:
            name = _name(msg_type)
            if name.endswith("_completion"):
                name = name.removesuffix("_completion") + " completed"
            else:  # a signal: how awakeables are completed, or a named signal
                name += " received"
            span.add_event(name)

    def attempt_ended(
        self, inv: ActiveInvocation, attempt: Attempt, outcome: str, error: str | None
    ) -> None:
        self._end_attempt(inv.id, outcome, error)

    def invocation_completed(self, inv: ActiveInvocation, failure: Failure | None) -> None:
        self._end_attempt(inv.id, "completed", None)
        span = self._invocations.pop(inv.id, None)
        if span is None:
            # created before a restart of the server: close the trace with a short span
            span = self.tracer.start_span(
                f"invocation {target_of(inv)} (resumed)",
                context=self._stored_context(inv),
                attributes={INVOCATION_ID: inv.id, INVOCATION_TARGET: target_of(inv)},
            )
        if failure is None:
            span.set_attribute(INVOCATION_RESULT, "success")
        else:
            span.set_attribute(INVOCATION_RESULT, "failure")
            span.set_attribute(ERROR_CODE, failure.code)
            span.set_status(Status(StatusCode.ERROR, failure.message))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered (spans of invocations still running are not)."""
        try:
            self.provider.shutdown()
        except Exception as e:  # never let the exporter stop a shutdown
            log.warning("tracing shutdown failed: %s", e)

    # -- helpers --------------------------------------------------------------------------

    def _end_attempt(self, invocation_id: str, outcome: str, error: str | None) -> None:
        span = self._attempts.pop(invocation_id, None)
        if span is None:
            return
        span.set_attribute("restate.invocation.attempt.outcome", outcome)
        if outcome == "suspended":
            span.add_event("suspended")
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @staticmethod
    def _stored_context(inv: ActiveInvocation) -> Any:
        traceparent = inv.row.extra.get(_TRACEPARENT)
        if not isinstance(traceparent, str):
            return None
        return _propagator.extract({_TRACEPARENT: traceparent})


def _traceparent(span: Span) -> str:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier[_TRACEPARENT]


def install(endpoint: str, exporter: SpanExporter | None = None) -> Tracing:
    """Tracing to an OTLP/HTTP collector at ``endpoint`` (e.g. ``http://localhost:4318``)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
    provider = TracerProvider(
        resource=Resource.create({"service.name": "durably", "service.version": __version__})
    )
    # a short delay: an operator looks at a trace seconds after the call, not a minute
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return Tracing(provider)
