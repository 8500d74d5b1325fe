"""CallOrdering: calls and one-way sends from one handler to one object key run in the
order they were issued."""

from __future__ import annotations

import pytest
from tests.support.harness import Env

SERVICES = ["Proxy", "ListObject"]


@pytest.mark.parametrize(
    "one_way",
    [[True, False, False], [False, True, False], [True, True, False]],
    ids=["TFF", "FTF", "TTF"],
)
def test_ordering(env: Env, one_way: list[bool]) -> None:
    list_key = env.new_key()
    requests = [
        {
            "proxyRequest": env.proxy_request("ListObject", "append", str(i), key=list_key),
            "oneWayCall": flag,
            "awaitAtTheEnd": not flag,
        }
        for i, flag in enumerate(one_way)
    ]
    env.call_json("Proxy", "manyCalls", requests)
    assert env.call_json("ListObject", "clear", key=list_key) == ["0", "1", "2"]
