"""The request header encoder of the h2 client: stateless HPACK that any decoder reads."""

from __future__ import annotations

from hpack import Decoder

from durably.invoker.h2client import _ClientH2Connection, _RequestHeaderEncoder

HEADERS = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:9080"),
    (b":path", b"/invoke/Greeter/greet"),
    (b"content-type", b"application/vnd.restate.invocation.v5"),
    (b"accept", b"application/vnd.restate.invocation.v5"),
    (b"x-restate-invocation-id", b"inv_1abc"),
    (b"x-custom", b"value"),
]


def test_round_trip_through_a_decoder() -> None:
    encoder, decoder = _RequestHeaderEncoder(), Decoder()
    for i in range(5):
        headers = [*HEADERS[:-2], (b"x-restate-invocation-id", f"inv_{i}".encode()), HEADERS[-1]]
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    # nothing entered the decoder's dynamic table
    assert len(decoder.header_table.dynamic_entries) == 0


def test_str_headers_are_encoded_too() -> None:
    encoder, decoder = _RequestHeaderEncoder(), Decoder()
    decoded = decoder.decode(encoder.encode([(":method", "GET"), ("x-a", "b")]), raw=True)
    assert decoded == [(b":method", b"GET"), (b"x-a", b"b")]


def test_table_size_change_is_signalled() -> None:
    encoder, decoder = _RequestHeaderEncoder(), Decoder()
    encoder.header_table_size = 256
    block = encoder.encode(HEADERS)
    assert block[0] & 0xE0 == 0x20  # dynamic table size update first
    assert decoder.decode(block, raw=True) == HEADERS
    assert decoder.header_table.maxsize == 256
    assert decoder.decode(encoder.encode(HEADERS), raw=True) == HEADERS


def test_connection_uses_it() -> None:
    assert isinstance(_ClientH2Connection().encoder, _RequestHeaderEncoder)
