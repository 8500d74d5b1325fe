import pytest

from durably.protocol.framing import (
    REQUESTED_ACK_FLAG,
    Frame,
    FrameDecoder,
    ProtocolViolation,
    encode_frame,
)

# protocol.md §2: GetLazyState{key:"v", result_completion_id:1}
EXAMPLE_BODY = bytes.fromhex("0a01765801")
EXAMPLE_FRAME = bytes.fromhex("0402000000000005") + EXAMPLE_BODY


def test_encode_matches_spec_example() -> None:
    assert encode_frame(0x0402, EXAMPLE_BODY) == EXAMPLE_FRAME


def test_decode_spec_example() -> None:
    (frame,) = FrameDecoder().feed(EXAMPLE_FRAME)
    assert frame == Frame(0x0402, 0, EXAMPLE_BODY)
    assert not frame.requested_ack


def test_requested_ack_flag() -> None:
    data = encode_frame(0x0005, b"\x08\x01", requested_ack=True)
    assert data[:4] == bytes.fromhex("00058000")
    (frame,) = FrameDecoder().feed(data)
    assert frame.flags == REQUESTED_ACK_FLAG
    assert frame.requested_ack


def test_empty_body() -> None:
    data = encode_frame(0x0003, b"")
    assert data == bytes.fromhex("0003000000000000")
    assert FrameDecoder().feed(data) == [Frame(3, 0, b"")]


def test_byte_by_byte() -> None:
    stream = EXAMPLE_FRAME + encode_frame(0x0003, b"") + encode_frame(0x0401, b"x" * 300)
    dec = FrameDecoder()
    out: list[Frame] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert [f.msg_type for f in out] == [0x0402, 0x0003, 0x0401]
    assert out[2].body == b"x" * 300
    assert dec.at_frame_boundary()


def test_several_frames_in_one_chunk_and_split_remainder() -> None:
    a, b, c = (encode_frame(0x0400 + i, bytes([i]) * (i + 1)) for i in range(3))
    dec = FrameDecoder()
    assert [f.msg_type for f in dec.feed(a + b + c[:3])] == [0x0400, 0x0401]
    assert dec.buffered == 3
    assert not dec.at_frame_boundary()
    assert dec.feed(c[3:]) == [Frame(0x0402, 0, b"\x02\x02\x02")]
    assert dec.at_frame_boundary()


def test_empty_feed() -> None:
    assert FrameDecoder().feed(b"") == []


def test_absurd_length_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation):
        FrameDecoder().feed(bytes.fromhex("0400000004000001"))  # 64 MiB + 1
    dec = FrameDecoder(max_frame_length=10)
    with pytest.raises(ProtocolViolation):
        dec.feed(bytes.fromhex("040000000000000b"))
    # exactly at the limit is fine (and just waits for the body)
    assert FrameDecoder(max_frame_length=10).feed(bytes.fromhex("040000000000000a")) == []


def test_encode_rejects_bad_type() -> None:
    with pytest.raises(ValueError):
        encode_frame(0x10000, b"")
