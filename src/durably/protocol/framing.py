"""Message framing: an 8-byte big-endian header in front of every protobuf body.

Header layout (protocol.md §2): u16 message type, u16 flags, u32 body length. The only flag in
use is REQUESTED_ACK (0x8000): the SDK sets it on ProposeRunCompletion in V7 and expects a
ProposeRunCompletionAck instead of the full RunCompletion notification.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "DEFAULT_MAX_FRAME_LENGTH",
    "HEADER_LENGTH",
    "REQUESTED_ACK_FLAG",
    "Frame",
    "FrameDecoder",
    "ProtocolViolation",
    "encode_frame",
]

HEADER_LENGTH = 8
REQUESTED_ACK_FLAG = 0x8000
# Bodies are single journal entries; anything this big is far more likely a desynchronised
# stream (or not our protocol at all) than a real message, so we stop before buffering it.
DEFAULT_MAX_FRAME_LENGTH = 64 * 1024 * 1024

_HEADER = struct.Struct(">HHI")


class ProtocolViolation(Exception):
    """The peer sent bytes that cannot be a valid frame sequence."""


class Frame(NamedTuple):
    msg_type: int
    flags: int
    body: bytes

    @property
    def requested_ack(self) -> bool:
        return bool(self.flags & REQUESTED_ACK_FLAG)


def encode_frame(msg_type: int, body: bytes, *, requested_ack: bool = False) -> bytes:
    if not 0 <= msg_type <= 0xFFFF:
        raise ValueError(f"message type out of range: {msg_type:#x}")
    if len(body) > 0xFFFFFFFF:
        raise ValueError("frame body longer than 4 GiB")
    flags = REQUESTED_ACK_FLAG if requested_ack else 0
    return _HEADER.pack(msg_type, flags, len(body)) + body


class FrameDecoder:
    """Incremental decoder: feed it chunks as they arrive, get back the complete frames.

    Chunk boundaries are arbitrary (HTTP DATA frames), so a frame may span several chunks and
    one chunk may hold several frames; the remainder is buffered until the next feed().
    """

    def __init__(self, *, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH) -> None:
        self._buf = bytearray()
        self._max = max_frame_length

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_LENGTH:
            msg_type, flags, length = _HEADER.unpack_from(buf, pos)
            if length > self._max:
                raise ProtocolViolation(
                    f"frame of type {msg_type:#06x} declares {length} bytes, "
                    f"more than the {self._max} byte limit"
                )
            if end - pos - HEADER_LENGTH < length:
                break
            start = pos + HEADER_LENGTH
            frames.append(Frame(msg_type, flags, bytes(buf[start : start + length])))
            pos = start + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def at_frame_boundary(self) -> bool:
        """True when nothing is buffered: an EOF here is clean, anywhere else it truncates."""
        return not self._buf
