"""How the engine answers each message an SDK sends during an attempt.

One function per message type, registered in `HANDLERS`. Commands are appended to the
invocation's journal before they are answered, so a replay sees them in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from durably.engine.attempt import Attempt
from durably.engine.model import (
    NOT_FOUND,
    WORKFLOW_ALREADY_INVOKED,
    ActiveInvocation,
    Failure,
    Result,
    now_ms,
)
from durably.engine.notifications import failure_from_pb, notification
from durably.ids import InvocationId, parse_awakeable_id
from durably.protocol.framing import encode_frame
from durably.protocol.messages import (
    MessageType,
    decode_message,
    is_command,
    is_custom,
    pb,
    suspension_awaited,
)

if TYPE_CHECKING:
    from durably.engine.engine import Engine


class ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


Handler = Callable[["Engine", ActiveInvocation, Attempt, object, int], None]
HANDLERS: dict[int, Handler] = {}
Precheck = Callable[["Engine", ActiveInvocation, object], None]
PRECHECKS: dict[int, Precheck] = {}


def prechecks(*msg_types: MessageType) -> Callable[[Precheck], Precheck]:
    def register(fn: Precheck) -> Precheck:
        for t in msg_types:
            PRECHECKS[int(t)] = fn
        return fn

    return register


def handles(msg_type: MessageType) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[int(msg_type)] = fn
        return fn

    return register


def handle(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg_type: int, flags: int, body: bytes
) -> None:
    if msg_type == MessageType.AWAITING_ON:
        return  # a hint only
    try:
        msg = decode_message(msg_type, body, attempt.protocol_version)
    except Exception as e:
        if is_custom(msg_type):
            engine._append(inv, msg_type, body)
            return
        raise ProtocolError(571, f"cannot decode message type 0x{msg_type:04x}: {e}") from e
    if engine.observer is not None:
        engine.observer.journal_message(inv, attempt, msg_type, msg)
    index = None
    if is_command(msg_type) or is_custom(msg_type):
        if msg_type == MessageType.INPUT_COMMAND:
            raise ProtocolError(571, "the SDK must not send an input command")
        precheck = PRECHECKS.get(msg_type)
        if precheck is not None:
            # refuse before journaling, so that a retry does not replay a command we never ran
            precheck(engine, inv, msg)
        index = engine._append(inv, msg_type, body)
    fn = HANDLERS.get(msg_type)
    if fn is None:
        if index is None:
            raise ProtocolError(571, f"unexpected message type 0x{msg_type:04x}")
        return
    fn(engine, inv, attempt, msg, flags)
    if index is not None and flags & 0x8000:
        ack = pb.CommandAckMessage(command_index=index)
        frame = encode_frame(MessageType.COMMAND_ACK, ack.SerializeToString())
        engine._effect(lambda: attempt.push(frame))


def _keyed(inv: ActiveInvocation) -> tuple[str, str]:
    if not inv.target.is_keyed:
        raise ProtocolError(571, "state is only available to virtual objects and workflows")
    return inv.target.service, inv.target.key or ""


def _can_write_state(inv: ActiveInvocation) -> None:
    if inv.target.handler_ty == "shared" or not inv.target.is_keyed:
        raise ProtocolError(571, "this handler cannot modify state (shared or unkeyed)")


@prechecks(
    MessageType.SET_STATE_COMMAND,
    MessageType.CLEAR_STATE_COMMAND,
    MessageType.CLEAR_ALL_STATE_COMMAND,
)
def _check_state_write(engine: Engine, inv: ActiveInvocation, msg: object) -> None:
    _can_write_state(inv)


@prechecks(MessageType.GET_LAZY_STATE_COMMAND, MessageType.GET_LAZY_STATE_KEYS_COMMAND)
def _check_state_read(engine: Engine, inv: ActiveInvocation, msg: object) -> None:
    _keyed(inv)


@prechecks(
    MessageType.GET_PROMISE_COMMAND,
    MessageType.PEEK_PROMISE_COMMAND,
    MessageType.COMPLETE_PROMISE_COMMAND,
)
def _check_promise(engine: Engine, inv: ActiveInvocation, msg: object) -> None:
    _workflow(inv)


@prechecks(MessageType.CALL_COMMAND, MessageType.ONE_WAY_CALL_COMMAND)
def _check_call(engine: Engine, inv: ActiveInvocation, msg: object) -> None:
    _resolve_callee(engine, msg.service_name, msg.handler_name, msg.key)  # type: ignore[attr-defined]
    if msg.HasField("idempotency_key") and not msg.idempotency_key:  # type: ignore[attr-defined]
        raise ProtocolError(400, "the idempotency key must not be empty")


# ---------------------------------------------------------------------------- control


@handles(MessageType.END)
def _end(engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int) -> None:
    engine.complete_from_output(inv, attempt)


@handles(MessageType.SUSPENSION)
def _suspension(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    completions, signals, names = suspension_awaited(msg, attempt.protocol_version)
    engine.suspend(inv, attempt, (frozenset(completions), frozenset(signals), frozenset(names)))


@handles(MessageType.ERROR)
def _error(engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int) -> None:
    assert isinstance(msg, pb.ErrorMessage)
    delay = msg.next_retry_delay if msg.HasField("next_retry_delay") else None
    text = msg.message
    if msg.HasField("related_command_name") and msg.related_command_name:
        text = f"{text} (command '{msg.related_command_name}')"
    command = msg.related_command_index if msg.HasField("related_command_index") else None
    engine.attempt_failed(
        attempt, msg.code or 500, text, next_retry_delay_ms=delay, behavior=int(msg.behavior),
        command_index=command,
    )
    # what the web UI shows beside the last failure: the SDK's stack trace and the command
    # the attempt failed at (kept with the message they belong to, as the last failure is
    # overwritten by failures that carry neither)
    detail: dict[str, object] = {"message": text}
    if msg.stacktrace:
        detail["stacktrace"] = msg.stacktrace[:16_384]
    if msg.HasField("related_command_index"):
        detail["related_command_index"] = msg.related_command_index
    inv.row.extra["failure_detail"] = detail


@handles(MessageType.PROPOSE_RUN_COMPLETION)
def _propose_run(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.ProposeRunCompletionMessage)
    cid = msg.result_completion_id
    if msg.WhichOneof("result") == "failure":
        body = notification(
            MessageType.RUN_COMPLETION, completion_id=cid, failure=failure_from_pb(msg.failure)
        )
    else:
        body = notification(MessageType.RUN_COMPLETION, completion_id=cid, value=msg.value)
    if inv.completion_ids is not None and cid in inv.completion_ids:
        return  # already stored (a repeated proposal after a retry)
    engine._append(inv, MessageType.RUN_COMPLETION, body)
    engine._track_notification(inv, MessageType.RUN_COMPLETION, body)
    if attempt.protocol_version >= 7 and flags & 0x8000:
        ack = pb.ProposeRunCompletionAckMessage(completion_id=cid)
        frame = encode_frame(MessageType.PROPOSE_RUN_COMPLETION_ACK, ack.SerializeToString())
    else:
        frame = encode_frame(MessageType.RUN_COMPLETION, body)
    engine._effect(lambda: attempt.push(frame))


# ---------------------------------------------------------------------------- state


def _reply(engine: Engine, inv: ActiveInvocation, msg_type: MessageType, **kwargs: object) -> None:
    engine.notify(inv.id, msg_type, notification(msg_type, **kwargs))  # type: ignore[arg-type]


@handles(MessageType.GET_LAZY_STATE_COMMAND)
def _get_lazy_state(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.GetLazyStateCommandMessage)
    service, key = _keyed(inv)
    value = engine.store.get_state(service, key, msg.key)
    cid = msg.result_completion_id
    if value is None:
        _reply(engine, inv, MessageType.GET_LAZY_STATE_COMPLETION, completion_id=cid, void=True)
    else:
        _reply(engine, inv, MessageType.GET_LAZY_STATE_COMPLETION, completion_id=cid, value=value)


@handles(MessageType.GET_LAZY_STATE_KEYS_COMMAND)
def _get_lazy_state_keys(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.GetLazyStateKeysCommandMessage)
    service, key = _keyed(inv)
    keys = [name for name, _ in engine.store.all_state(service, key)]
    _reply(
        engine,
        inv,
        MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
        completion_id=msg.result_completion_id,
        state_keys=keys,
    )


@handles(MessageType.SET_STATE_COMMAND)
def _set_state(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.SetStateCommandMessage)
    _can_write_state(inv)
    service, key = _keyed(inv)
    engine.store.set_state(service, key, msg.key, msg.value.content)


@handles(MessageType.CLEAR_STATE_COMMAND)
def _clear_state(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.ClearStateCommandMessage)
    _can_write_state(inv)
    service, key = _keyed(inv)
    engine.store.clear_state(service, key, msg.key)


@handles(MessageType.CLEAR_ALL_STATE_COMMAND)
def _clear_all_state(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    _can_write_state(inv)
    service, key = _keyed(inv)
    engine.store.clear_all_state(service, key)


# ---------------------------------------------------------------------------- timers


@handles(MessageType.SLEEP_COMMAND)
def _sleep(engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int) -> None:
    assert isinstance(msg, pb.SleepCommandMessage)
    cid = msg.result_completion_id
    if msg.wake_up_time <= now_ms():
        _reply(engine, inv, MessageType.SLEEP_COMPLETION, completion_id=cid, void=True)
        return
    engine._add_timer(msg.wake_up_time, "sleep", inv.id, cid)


# ---------------------------------------------------------------------------- calls


def _resolve_callee(engine: Engine, service: str, handler: str, key: str) -> tuple[object, object]:
    from durably.engine.engine import TargetError

    try:
        return engine.schema.target(service, handler, key or None)
    except TargetError as e:
        raise ProtocolError(500, e.message) from e


@handles(MessageType.CALL_COMMAND)
def _call(engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int) -> None:
    assert isinstance(msg, pb.CallCommandMessage)
    _invoke(engine, inv, msg, call=True)


@handles(MessageType.ONE_WAY_CALL_COMMAND)
def _one_way_call(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.OneWayCallCommandMessage)
    _invoke(engine, inv, msg, call=False)


def _invoke(engine: Engine, inv: ActiveInvocation, msg: object, *, call: bool) -> None:
    from durably.engine.engine import HandlerOptions
    from durably.engine.model import Target

    service: str = msg.service_name  # type: ignore[attr-defined]
    handler: str = msg.handler_name  # type: ignore[attr-defined]
    key: str = msg.key  # type: ignore[attr-defined]
    target, options = _resolve_callee(engine, service, handler, key)
    assert isinstance(target, Target) and isinstance(options, HandlerOptions)
    idem: str | None = None
    if msg.HasField("idempotency_key"):  # type: ignore[attr-defined]
        idem = msg.idempotency_key  # type: ignore[attr-defined]
        if not idem:
            raise ProtocolError(400, "the idempotency key must not be empty")
    headers = [(h.key, h.value) for h in msg.headers]  # type: ignore[attr-defined]
    execution_time = None if call else (msg.invoke_time or None)  # type: ignore[attr-defined]
    submitted = engine.create(
        target,
        options,
        msg.parameter,  # type: ignore[attr-defined]
        headers,
        idempotency_key=idem,
        execution_time=execution_time,
        invoked_by="service",
        caller=inv,
        reply_to=msg.result_completion_id if call else None,  # type: ignore[attr-defined]
    )
    _reply(
        engine,
        inv,
        MessageType.CALL_INVOCATION_ID_COMPLETION,
        completion_id=msg.invocation_id_notification_idx,  # type: ignore[attr-defined]
        invocation_id=submitted.invocation_id,
    )
    if not call or submitted.remote:
        return  # a remote target's owner answers the call (engine.partitions)
    cid = msg.result_completion_id  # type: ignore[attr-defined]
    if submitted.existed and target.is_workflow_run:
        _reply(
            engine, inv, MessageType.CALL_COMPLETION, completion_id=cid, failure=WORKFLOW_ALREADY_INVOKED
        )
        return
    result = engine.completed_result(submitted.invocation_id) if submitted.existed else None
    if result is not None:
        _reply(engine, inv, MessageType.CALL_COMPLETION, completion_id=cid, result=result)
    else:
        engine.subscribe(submitted.invocation_id, inv, cid, MessageType.CALL_COMPLETION)


# ---------------------------------------------------------------------------- signals


@handles(MessageType.SEND_SIGNAL_COMMAND)
def _send_signal(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.SendSignalCommandMessage)
    target = msg.target_invocation_id
    which = msg.WhichOneof("signal_id")
    if which == "idx" and msg.idx == 1:
        engine.cancel(target)
        return
    result = _signal_result(msg)
    if which == "idx":
        body = notification(MessageType.SIGNAL_NOTIFICATION, signal_id=msg.idx, result=result)
    else:
        body = notification(MessageType.SIGNAL_NOTIFICATION, signal_name=msg.name, result=result)
    engine.notify(target, MessageType.SIGNAL_NOTIFICATION, body)


def _signal_result(msg: object) -> Result | None:
    which = msg.WhichOneof("result")  # type: ignore[attr-defined]
    if which == "value":
        return Result(value=msg.value.content)  # type: ignore[attr-defined]
    if which == "failure":
        return Result(failure=failure_from_pb(msg.failure))  # type: ignore[attr-defined]
    return None


def _signal_body(signal_id: int, result: Result | None) -> bytes:
    if result is None:
        return notification(MessageType.SIGNAL_NOTIFICATION, signal_id=signal_id, void=True)
    return notification(MessageType.SIGNAL_NOTIFICATION, signal_id=signal_id, result=result)


@handles(MessageType.COMPLETE_AWAKEABLE_COMMAND)
def _complete_awakeable(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.CompleteAwakeableCommandMessage)
    try:
        target, idx = parse_awakeable_id(msg.awakeable_id)
    except ValueError:
        return  # Restate ignores ids it cannot parse
    which = msg.WhichOneof("result")
    if which == "failure":
        result = Result(failure=failure_from_pb(msg.failure))
    else:
        result = Result(value=msg.value.content)
    engine.notify(str(target), MessageType.SIGNAL_NOTIFICATION, _signal_body(idx, result))


def complete_awakeable(engine: Engine, awakeable_id: str, result: Result) -> bool:
    """From the ingress: resolve or reject an awakeable. False if the id is malformed."""
    target, idx = parse_awakeable_id(awakeable_id)
    engine.notify(str(target), MessageType.SIGNAL_NOTIFICATION, _signal_body(idx, result))
    return True


# ---------------------------------------------------------------------------- promises


def _workflow(inv: ActiveInvocation) -> tuple[str, str]:
    if inv.target.service_ty != "workflow":
        raise ProtocolError(571, "durable promises are only available to workflows")
    return inv.target.service, inv.target.key or ""


@handles(MessageType.GET_PROMISE_COMMAND)
def _get_promise(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.GetPromiseCommandMessage)
    service, key = _workflow(inv)
    stored = engine.store.get_promise(service, key, msg.key)
    cid = msg.result_completion_id
    if stored is not None:
        _reply(engine, inv, MessageType.GET_PROMISE_COMPLETION, completion_id=cid, result=Result.decode(stored))
    else:
        engine.store.add_promise_listener(service, key, msg.key, inv.id, cid)


@handles(MessageType.PEEK_PROMISE_COMMAND)
def _peek_promise(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.PeekPromiseCommandMessage)
    service, key = _workflow(inv)
    stored = engine.store.get_promise(service, key, msg.key)
    cid = msg.result_completion_id
    if stored is None:
        _reply(engine, inv, MessageType.PEEK_PROMISE_COMPLETION, completion_id=cid, void=True)
    else:
        _reply(engine, inv, MessageType.PEEK_PROMISE_COMPLETION, completion_id=cid, result=Result.decode(stored))


@handles(MessageType.COMPLETE_PROMISE_COMMAND)
def _complete_promise(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.CompletePromiseCommandMessage)
    service, key = _workflow(inv)
    cid = msg.result_completion_id
    if engine.store.get_promise(service, key, msg.key) is not None:
        _reply(
            engine,
            inv,
            MessageType.COMPLETE_PROMISE_COMPLETION,
            completion_id=cid,
            failure=Failure(409, "promise was already completed"),
        )
        return
    if msg.WhichOneof("completion") == "completion_failure":
        result = Result(failure=failure_from_pb(msg.completion_failure))
    else:
        result = Result(value=msg.completion_value.content)
    engine.store.set_promise(service, key, msg.key, result.encode())
    for listener, listener_cid in engine.store.take_promise_listeners(service, key, msg.key):
        engine.notify(
            listener,
            MessageType.GET_PROMISE_COMPLETION,
            notification(MessageType.GET_PROMISE_COMPLETION, completion_id=listener_cid, result=result),
        )
    _reply(engine, inv, MessageType.COMPLETE_PROMISE_COMPLETION, completion_id=cid, void=True)


# ---------------------------------------------------------------------------- attach / output


def resolve_target_id(msg: object) -> str | None:
    """The invocation an attach or get-output command names (None: it names none)."""
    which = msg.WhichOneof("target")  # type: ignore[attr-defined]
    if which == "invocation_id":
        return str(msg.invocation_id)  # type: ignore[attr-defined]
    if which == "workflow_target":
        wt = msg.workflow_target  # type: ignore[attr-defined]
        return str(
            InvocationId.generate(
                service=wt.workflow_name, handler="", key=wt.workflow_key,
                idempotency_key=None, workflow_run=True,
            )
        )
    if which == "idempotent_request_target":
        t = msg.idempotent_request_target  # type: ignore[attr-defined]
        key = t.service_key if t.HasField("service_key") else None
        return str(
            InvocationId.generate(
                service=t.service_name, handler=t.handler_name, key=key,
                idempotency_key=t.idempotency_key, workflow_run=False,
            )
        )
    return None


@handles(MessageType.ATTACH_INVOCATION_COMMAND)
def _attach(engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int) -> None:
    assert isinstance(msg, pb.AttachInvocationCommandMessage)
    cid = msg.result_completion_id
    target_id = resolve_target_id(msg)
    if target_id is not None and engine.is_remote(target_id):
        engine.ask(target_id, "subscribe", inv, cid, MessageType.ATTACH_INVOCATION_COMPLETION)
        return
    row = engine.lookup(target_id) if target_id else None
    if row is None or target_id is None:
        _reply(engine, inv, MessageType.ATTACH_INVOCATION_COMPLETION, completion_id=cid, failure=NOT_FOUND)
        return
    result = engine.completed_result(target_id)
    if result is not None:
        _reply(engine, inv, MessageType.ATTACH_INVOCATION_COMPLETION, completion_id=cid, result=result)
    else:
        engine.subscribe(target_id, inv, cid, MessageType.ATTACH_INVOCATION_COMPLETION)


@handles(MessageType.GET_INVOCATION_OUTPUT_COMMAND)
def _get_output(
    engine: Engine, inv: ActiveInvocation, attempt: Attempt, msg: object, flags: int
) -> None:
    assert isinstance(msg, pb.GetInvocationOutputCommandMessage)
    cid = msg.result_completion_id
    target_id = resolve_target_id(msg)
    t = MessageType.GET_INVOCATION_OUTPUT_COMPLETION
    if target_id is not None and engine.is_remote(target_id):
        engine.ask(target_id, "output", inv, cid, t)
        return
    row = engine.lookup(target_id) if target_id else None
    if row is None or target_id is None:
        _reply(engine, inv, t, completion_id=cid, failure=NOT_FOUND)
        return
    result = engine.completed_result(target_id)
    if result is None:
        _reply(engine, inv, t, completion_id=cid, void=True)
    else:
        _reply(engine, inv, t, completion_id=cid, result=result)
