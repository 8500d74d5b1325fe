import pytest

from durably.protocol.version import (
    DEFAULT_MAX_VERSION,
    MAX_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    UnsupportedVersion,
    content_type,
    negotiate,
    parse_content_type,
)


def test_constants() -> None:
    assert (MIN_PROTOCOL_VERSION, DEFAULT_MAX_VERSION, MAX_PROTOCOL_VERSION) == (5, 6, 7)


def test_content_type_round_trip() -> None:
    assert content_type(6) == "application/vnd.restate.invocation.v6"
    for v in range(1, 10):
        assert parse_content_type(content_type(v)) == v
    assert parse_content_type("Application/Vnd.Restate.Invocation.V7; charset=x ") == 7
    assert parse_content_type("application/json") is None
    assert parse_content_type("application/vnd.restate.invocation.v") is None
    assert parse_content_type("") is None


def test_negotiate() -> None:
    assert negotiate(5, 7) == 6
    assert negotiate(5, 7, enable_v7=True) == 7
    assert negotiate(5, 5) == 5
    assert negotiate(5, 9, enable_v7=True) == 7
    assert negotiate(7, 7, enable_v7=True) == 7


@pytest.mark.parametrize("lo,hi,v7", [(7, 7, False), (1, 4, True), (8, 9, True), (6, 5, True)])
def test_negotiate_unsupported(lo: int, hi: int, v7: bool) -> None:
    with pytest.raises(UnsupportedVersion):
        negotiate(lo, hi, enable_v7=v7)
