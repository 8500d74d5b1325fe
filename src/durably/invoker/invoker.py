"""Runs attempts against deployments: the I/O shell around the engine.

For each attempt it opens one HTTP exchange (`POST {deployment}/invoke/{service}/{handler}`),
writes Start plus the journal, and feeds every frame the SDK sends back into the engine.
In bidirectional mode the request stream stays open and the engine's notifications are
written as they come; in request/response mode the request is closed right after the
journal and the SDK suspends whenever it needs something it does not have.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from durably.engine.attempt import Attempt
from durably.invoker.transport import Transport, TransportError
from durably.protocol.framing import FrameDecoder, ProtocolViolation
from durably.protocol.version import content_type
from durably.storage.sqlite import StorageError

if TYPE_CHECKING:
    from durably.engine.engine import Engine
    from durably.security.identity import RequestSigner

log = logging.getLogger("durably.invoker")

DRAIN_TIMEOUT_S = 5.0


# hypercorn (the usual restate-sdk server) cannot hold more than 1000 streams on one HTTP/2
# connection (its priority tree refuses the 1001st and the connection dies), whatever
# SETTINGS_MAX_CONCURRENT_STREAMS it advertises; and that priority tree (the `priority`
# package) rebuilds a connection's whole queue whenever one of its streams closes, so each
# stream costs the deployment time in proportion to the streams beside it on its connection
# (1,000 sleeping invocations cost the SDK process 1.4 ms of CPU each at 500 streams per
# connection, 1.0 ms at 100). Beyond this many, open another connection.
MAX_STREAMS_PER_CONNECTION = 100


class Invoker:
    def __init__(
        self,
        engine: Engine,
        *,
        http1_max_connections: int | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        """`http1_max_connections`: the cap on connections per HTTP/1.1 deployment
        (None: `Http1Transport`'s default; 0: no cap). `signer`: durably's request identity,
        sent with every attempt."""
        self.engine = engine
        self.signer = signer
        self.http1_max_connections = http1_max_connections
        self._transports: dict[tuple[str, bool], Transport] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def transport(self, uri: str, use_http_11: bool) -> Transport:
        key = (uri, use_http_11)
        transport = self._transports.get(key)
        if transport is None:
            if use_http_11:
                from durably.invoker.http1 import Http1Transport

                if self.http1_max_connections is None:
                    transport = Http1Transport(uri)
                else:
                    transport = Http1Transport(uri, max_connections=self.http1_max_connections)
            else:
                from durably.invoker.h2client import H2Pool

                transport = H2Pool(uri, max_streams_per_connection=MAX_STREAMS_PER_CONNECTION)
            self._transports[key] = transport
        return transport

    @property
    def running(self) -> int:
        """Attempts whose exchange with a deployment is open (O(1))."""
        return len(self._tasks)

    def start(self, attempt: Attempt) -> None:
        task = asyncio.get_running_loop().create_task(self._run(attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for transport in self._transports.values():
            try:
                await transport.close()
            except Exception:
                pass
        self._transports.clear()

    def _headers(self, attempt: Attempt, path: str) -> list[tuple[str, str]]:
        ct = content_type(attempt.protocol_version)
        headers = [
            ("content-type", ct),
            ("accept", ct),
            ("x-restate-invocation-id", attempt.invocation_id),
        ]
        if attempt.key is not None:
            headers.append(("x-restate-service-key", quote(attempt.key, safe="")))
        if self.signer is not None:
            # a fresh token per attempt; as Restate, the deployment's own headers come after
            headers.extend(self.signer.headers(path, attempt.key))
        headers.extend((k.lower(), v) for k, v in attempt.additional_headers.items())
        return headers

    async def _run(self, attempt: Attempt) -> None:
        engine = self.engine
        error: str | None = None
        retry_now = False
        stream = None
        writer: asyncio.Task[None] | None = None
        idle: _IdleTimeout | None = None
        try:
            transport = self.transport(attempt.deployment_uri, attempt.use_http_11)
            path = f"/invoke/{quote(attempt.service, safe='')}/{quote(attempt.handler, safe='')}"
            stream = await transport.open_stream("POST", path, self._headers(attempt, path))
            attempt._abort = stream.reset
            if attempt.closed:
                stream.reset()
                return
            await stream.send(attempt.initial)
            if attempt.bidi:
                # Frames the engine pushes are written at once when the stream can take them
                # (the usual case: a completion of a few bytes); a writer task that waits for
                # flow control starts only when one cannot, and then writes everything after.
                send_nowait = getattr(stream, "send_nowait", None)

                def wake() -> None:
                    nonlocal writer
                    if writer is not None:
                        return
                    if send_nowait is not None:
                        data = attempt.take_outbox()
                        if not data or send_nowait(data):
                            return
                        attempt._outbox.insert(0, data)
                    writer = asyncio.get_running_loop().create_task(self._write(attempt, stream))

                attempt._wake = wake
                if attempt._outbox:
                    wake()
            idle = _IdleTimeout()
            # request/response has no inactivity timeout (Restate's RT0021: the handler
            # runs while the request waits): the abort timeout bounds the wait instead, as
            # it bounds reading the body below
            head_timeout = attempt.inactivity_timeout_s if attempt.bidi else attempt.abort_timeout_s
            try:
                # a deployment that never answers must not hold the invocation forever;
                # this also bounds an HTTP/1.1 request's wait for a free pooled connection
                with idle.within(head_timeout or None):
                    if not attempt.bidi:
                        attempt.closed = True
                        await stream.end()
                    status, headers = await stream.response_head()
            except TimeoutError:
                which = "inactivity" if attempt.bidi else "abort"
                if not getattr(stream, "got_connection", True):
                    raise _AttemptError(
                        f"no free HTTP/1.1 connection to the deployment within the {which}"
                        " timeout (all --http1-max-connections in use)"
                    ) from None
                raise _AttemptError(
                    f"the deployment did not answer within the {which} timeout"
                ) from None
            if status != 200:
                body = await _read_some(stream)
                hint = ""
                if status == 401:
                    # what an SDK with identity keys answers to a missing or foreign signature
                    hint = (
                        " (the service refused durably's request identity: check "
                        "--request-identity-private-key-pem-file and the service's identity keys)"
                    )
                raise _AttemptError(f"the deployment answered HTTP {status}: {body}{hint}")
            ct = next((v for k, v in headers if k.lower() == "content-type"), None)
            expected = content_type(attempt.protocol_version)
            if ct is not None and ct.split(";")[0].strip() != expected:
                raise _AttemptError(f"unexpected content-type {ct!r} (expected {expected!r})")
            decoder = FrameDecoder()
            inactivity = attempt.inactivity_timeout_s if attempt.bidi else attempt.abort_timeout_s
            while True:
                try:
                    with idle.within(inactivity):
                        chunk = await stream.receive()
                except TimeoutError:
                    if not attempt.closed:
                        # nothing happened for a while: ask the SDK to suspend
                        attempt.closed = True
                        await stream.end()
                        inactivity = attempt.abort_timeout_s
                        continue
                    raise _AttemptError("the attempt was aborted after the abort timeout") from None
                if chunk is None:
                    break
                for frame in decoder.feed(chunk):
                    engine.on_frame(attempt, frame.msg_type, frame.flags, frame.body)
                if attempt.finished:
                    break
            if attempt.finished:
                if not attempt.closed:
                    attempt.closed = True
                    await stream.end()
                await _drain(stream, idle)
            else:
                error = "the deployment ended the response without End, Suspension or Error"
        except _AttemptError as e:
            error = str(e)
        except StorageError as e:
            # the store failed (the server is stopping because of it): no traceback
            error = f"storage failed: {e}"
        except ProtocolViolation as e:
            # the deployment's fault (e.g. a frame over the size limit), not ours: a one-line
            # failure on the invocation, no traceback in the log
            error = f"protocol violation: {e}"
        except TransportError as e:
            error = f"cannot reach the deployment {attempt.deployment_uri}: {e}"
            retry_now = bool(getattr(e, "retry_immediately", False))
        except asyncio.CancelledError:
            if stream is not None:
                stream.reset()
            raise
        except Exception as e:  # a bug or a protocol violation; never let it kill the engine
            log.exception("attempt %s of %s failed", attempt.seq, attempt.invocation_id)
            error = f"{type(e).__name__}: {e}"
        finally:
            if idle is not None:
                idle.close()
            if writer is not None:
                writer.cancel()
            elif attempt._wake is not None:
                attempt._wake = None
        if error is not None and stream is not None:
            stream.reset()
        engine.on_attempt_closed(attempt, error, retry_now=retry_now)
        engine._schedule_flush()

    async def _write(self, attempt: Attempt, stream: object) -> None:
        wake = asyncio.Event()
        attempt._wake = wake.set
        try:
            while not attempt.closed:
                data = attempt.take_outbox()
                if data:
                    await stream.send(data)  # type: ignore[attr-defined]
                    continue
                wake.clear()
                await wake.wait()
        except TransportError:
            pass
        finally:
            attempt._wake = None


class _AttemptError(Exception):
    pass


class _IdleTimeout:
    """`asyncio.timeout` for the successive awaits of one attempt, with a lazily moved timer.

    An attempt awaits the deployment several times (headers, each chunk of frames, the end),
    each under the inactivity timeout. A fresh `asyncio.timeout` per await schedules and
    cancels a loop timer every time; this keeps one timer per attempt: entering `within()`
    only moves the deadline, and the timer, when it fires before the deadline, re-arms itself
    for the rest. On expiry it cancels the task and turns that cancellation into
    `TimeoutError` at the end of the `with` block, exactly as `asyncio.timeout` does.
    """

    __slots__ = (
        "_loop", "_task", "_seconds", "_deadline", "_handle", "_armed_at", "_inside",
        "_expired", "_cancelling",
    )

    # A timer may fire a little before its time (the loop's clock resolution): within this
    # margin the deadline counts as reached rather than re-arming for a few microseconds.
    _SLACK_S = 0.002

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._seconds: float | None = None
        self._deadline = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._inside = False
        self._expired = False
        self._cancelling = 0

    def within(self, seconds: float | None) -> _IdleTimeout:
        self._seconds = seconds
        return self

    def __enter__(self) -> _IdleTimeout:
        seconds = self._seconds
        if seconds is None:
            return self
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        self._inside = True
        self._cancelling = self._task.cancelling()
        handle = self._handle
        if handle is None or self._armed_at > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(deadline, self._fire)
            self._armed_at = deadline
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._inside = False
        if self._expired:
            self._expired = False
            if (
                self._task.uncancel() <= self._cancelling
                and exc_type is asyncio.CancelledError
            ):
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        if not self._inside:
            return  # between awaits: the next `within()` arms the timer again
        if self._loop.time() + self._SLACK_S < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._fire)
            self._armed_at = self._deadline
            return
        self._expired = True
        self._task.cancel()

    def close(self) -> None:
        self._inside = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _read_some(stream: object, limit: int = 512) -> str:
    data = b""
    try:
        while len(data) < limit:
            async with asyncio.timeout(2.0):
                chunk = await stream.receive()  # type: ignore[attr-defined]
            if chunk is None:
                break
            data += chunk
    except Exception:
        pass
    return data[:limit].decode("utf-8", "replace").strip() or "(empty body)"


async def _drain(stream: object, idle: _IdleTimeout) -> None:
    try:
        with idle.within(DRAIN_TIMEOUT_S):
            while await stream.receive() is not None:  # type: ignore[attr-defined]
                pass
    except Exception:
        stream.reset()  # type: ignore[attr-defined]
