"""A deployment that speaks the service protocol wrongly, on purpose.

It serves one virtual object, ``Hostile`` with one handler ``run``, over cleartext HTTP/2
(hypercorn, in a thread of the test process). Every attempt of an invocation plays the
*script* registered for the invocation's object key: a list of steps, each one of

* ``("frames", b"...")``: raw bytes on the response stream (well-formed frames, frames
  out of order, a second End, a frame header announcing more than the limit, a truncated
  frame, a garbage protobuf body: whatever the bytes say);
* ``("sleep", seconds)``: a stall (no bytes, stream open);
* ``("reset",)``: the stream is reset where it stands (mid-frame if the bytes before ended
  inside one);

after the last step the response ends. ``frame()`` and the message helpers build the bytes.
The script is looked up from the StartMessage's ``key``, so many invocations, each with its
own script, can run at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config
from tests.support.harness import free_port

from durably.protocol.framing import FrameDecoder, encode_frame
from durably.protocol.messages import MessageType, pb

Step = tuple[Any, ...]
PROTOCOL_VERSION = 5
CONTENT_TYPE = f"application/vnd.restate.invocation.v{PROTOCOL_VERSION}"

MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": PROTOCOL_VERSION,
    "maxProtocolVersion": PROTOCOL_VERSION,
    "services": [{
        "name": "Hostile",
        "ty": "VIRTUAL_OBJECT",
        "handlers": [{"name": "run", "ty": "EXCLUSIVE", "input": {}, "output": {}}],
    }],
}


def frame(msg_type: int, body: bytes, flags: int = 0) -> bytes:
    """A frame with any type, flags and body (``encode_frame`` only sets the ack flag)."""
    return (msg_type.to_bytes(2, "big") + flags.to_bytes(2, "big")
            + len(body).to_bytes(4, "big") + body)


def message(msg: Any) -> bytes:
    from durably.protocol.messages import message_type_of

    return encode_frame(message_type_of(msg), msg.SerializeToString())


def output(value: bytes = b'"ok"') -> bytes:
    return message(pb.OutputCommandMessage(value=pb.Value(content=value)))


END = frame(MessageType.END, b"")


class HostileDeployment:
    """The server; ``scripts[key]`` is what an attempt on that key plays."""

    def __init__(self) -> None:
        self.port = free_port()
        self.scripts: dict[str, Sequence[Step]] = {}
        self.attempts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].endswith("/discover"):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/vnd.restate.endpointmanifest.v1+json")]})
            await send({"type": "http.response.body", "body": orjson.dumps(MANIFEST)})
            return
        key = await self._start_key(receive)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        script = self.scripts.get(key, [("frames", output() + END)])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode())]})
        for step in script:
            if step[0] == "frames":
                await send({"type": "http.response.body", "body": step[1], "more_body": True})
            elif step[0] == "sleep":
                await asyncio.sleep(step[1])
            elif step[0] == "reset":
                # an exception in the app after the response started: hypercorn resets
                # the HTTP/2 stream (RST_STREAM) instead of ending it
                raise ConnectionResetError("hostile deployment: reset mid-stream")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _start_key(receive: Any) -> str:
        decoder = FrameDecoder()
        while True:
            msg = await receive()
            for f in decoder.feed(msg.get("body", b"")):
                if f.msg_type == MessageType.START:
                    start = pb.StartMessage()
                    start.ParseFromString(f.body)
                    return start.key
            if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
                return ""

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            config = Config()
            config.bind = [f"127.0.0.1:{self.port}"]
            config.loglevel = "WARNING"
            config.accesslog = None
            config.errorlog = None

            async def main() -> None:
                task = loop.create_task(serve(self, config, shutdown_trigger=self._stop.wait))
                await asyncio.sleep(0.2)
                self._ready.set()
                await task

            loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=run, name="hostile-deployment", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile deployment did not start")

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
