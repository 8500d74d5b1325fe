"""Deployment ids are written the way Restate writes them, so that the official CLI (which
parses every id of `GET /services` and `GET /deployments`) reads each one."""

from __future__ import annotations

import datetime

from durably.schema.ids import check_deployment_id, new_deployment_id

# Restate's base62 digits (its `base62_util`: the crate's "alternative" order)
RESTATE_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def restate_decode(dep_id: str) -> tuple[int, bytes]:
    """(creation time in ms, the 16 ULID bytes) as Restate's decoder reads `dep_id`."""
    assert dep_id.startswith("dp_1")
    n = 0
    for c in dep_id[4:]:
        n = n * 62 + RESTATE_DIGITS.index(c)
    assert n < 1 << 128, f"{dep_id}: Restate's decoder answers 'base62 decode error'"
    ulid = n.to_bytes(16, "little")  # encoded as to_be() on a little-endian host
    return int.from_bytes(ulid[:6], "big"), ulid


def test_restates_own_example_reads_as_a_2024_ulid() -> None:
    # the id shown in Restate's documentation (docs/operate/versioning)
    ms, _ = restate_decode("dp_14LsPzGz9HBxXIeBoH5wYUh")
    assert datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).year == 2024
    assert check_deployment_id("dp_14LsPzGz9HBxXIeBoH5wYUh") is None


def test_every_new_id_reads_back_in_restates_decoder() -> None:
    # with the digits in the other order about one id in fifty overflowed 128 bits
    now = 1_790_000_000_000
    for i in range(3000):
        dep_id = new_deployment_id(now + i)
        assert check_deployment_id(dep_id) is None, dep_id
        ms, _ = restate_decode(dep_id)
        assert ms == now + i, dep_id


def test_malformed_ids_get_restates_reasons() -> None:
    assert check_deployment_id("inv_14LsPzGz9HBxXIeBoH5wYUh") == "bad format"
    assert check_deployment_id("dp_24LsPzGz9HBxXIeBoH5wYUh") == "unrecognized codec version"
    assert check_deployment_id("dp_14LsPzGz9HBxXIeBoH5wYU-") == "base62 decode error"
    assert check_deployment_id("dp_1ZZZZZZZZZZZZZZZZZZZZZZ") == "base62 decode error"
    assert check_deployment_id("dp_14LsPzGz9HBxXIeBoH5wYU") == "bad length"
