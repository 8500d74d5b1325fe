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
from durably.protocol.framing import FrameDecoder
from durably.protocol.version import content_type

if TYPE_CHECKING:
    from durably.engine.engine import Engine

log = logging.getLogger("durably.invoker")

DRAIN_TIMEOUT_S = 5.0


# hypercorn (the usual restate-sdk server) cannot hold more than 1000 streams on one HTTP/2
# connection (its priority tree refuses the 1001st and the connection dies), whatever
# SETTINGS_MAX_CONCURRENT_STREAMS it advertises: beyond this many, open another connection.
MAX_STREAMS_PER_CONNECTION = 500


class Invoker:
    def __init__(self, engine: Engine, *, http1_max_connections: int | None = None) -> None:
        """`http1_max_connections`: the cap on connections per HTTP/1.1 deployment
        (None: `Http1Transport`'s default; 0: no cap)."""
        self.engine = engine
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

    def _headers(self, attempt: Attempt) -> list[tuple[str, str]]:
        ct = content_type(attempt.protocol_version)
        headers = [
            ("content-type", ct),
            ("accept", ct),
            ("x-restate-invocation-id", attempt.invocation_id),
        ]
        if attempt.key is not None:
            headers.append(("x-restate-service-key", quote(attempt.key, safe="")))
        headers.extend((k.lower(), v) for k, v in attempt.additional_headers.items())
        return headers

    async def _run(self, attempt: Attempt) -> None:
        engine = self.engine
        error: str | None = None
        retry_now = False
        stream = None
        writer: asyncio.Task[None] | None = None
        try:
            transport = self.transport(attempt.deployment_uri, attempt.use_http_11)
            path = f"/invoke/{quote(attempt.service, safe='')}/{quote(attempt.handler, safe='')}"
            stream = await transport.open_stream("POST", path, self._headers(attempt))
            attempt._abort = stream.reset
            if attempt.closed:
                stream.reset()
                return
            await stream.send(attempt.initial)
            if attempt.bidi:
                writer = asyncio.get_running_loop().create_task(self._write(attempt, stream))
            try:
                # a deployment that never answers must not hold the invocation forever
                # (asyncio.timeout, not wait_for: no extra task per await on the hot path);
                # this also bounds an HTTP/1.1 request's wait for a free pooled connection
                async with asyncio.timeout(attempt.inactivity_timeout_s or None):
                    if not attempt.bidi:
                        attempt.closed = True
                        await stream.end()
                    status, headers = await stream.response_head()
            except TimeoutError:
                if not getattr(stream, "got_connection", True):
                    raise _AttemptError(
                        "no free HTTP/1.1 connection to the deployment within the inactivity"
                        " timeout (all --http1-max-connections in use)"
                    ) from None
                raise _AttemptError(
                    "the deployment did not answer within the inactivity timeout"
                ) from None
            if status != 200:
                body = await _read_some(stream)
                raise _AttemptError(f"the deployment answered HTTP {status}: {body}")
            ct = next((v for k, v in headers if k.lower() == "content-type"), None)
            expected = content_type(attempt.protocol_version)
            if ct is not None and ct.split(";")[0].strip() != expected:
                raise _AttemptError(f"unexpected content-type {ct!r} (expected {expected!r})")
            decoder = FrameDecoder()
            inactivity = attempt.inactivity_timeout_s if attempt.bidi else attempt.abort_timeout_s
            while True:
                try:
                    async with asyncio.timeout(inactivity):
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
                await _drain(stream)
            else:
                error = "the deployment ended the response without End, Suspension or Error"
        except _AttemptError as e:
            error = str(e)
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
            if writer is not None:
                writer.cancel()
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


async def _read_some(stream: object, limit: int = 512) -> str:
    data = b""
    try:
        while len(data) < limit:
            chunk = await asyncio.wait_for(stream.receive(), timeout=2.0)  # type: ignore[attr-defined]
            if chunk is None:
                break
            data += chunk
    except Exception:
        pass
    return data[:limit].decode("utf-8", "replace").strip() or "(empty body)"


async def _drain(stream: object) -> None:
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            while await stream.receive() is not None:  # type: ignore[attr-defined]
                pass
    except Exception:
        stream.reset()  # type: ignore[attr-defined]
