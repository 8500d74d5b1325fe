"""Every ingress URL form of http-api.md §1.1, parsed without a server."""

from __future__ import annotations

import pytest

from durably.ingress.paths import (
    BAD_INVOKE_PATH,
    Awakeable,
    ById,
    ByIdempotencyKey,
    ByTargetBody,
    ByWorkflow,
    Health,
    Invoke,
    PathError,
    ResolvedInvoke,
    parse,
    resolve_invoke,
)

INV = "inv_1aBcDeFgHiJk0123456789abcdefghij"


def invoke(path: str, keyed: bool) -> ResolvedInvoke:
    route = parse(path)
    assert isinstance(route, Invoke)
    return resolve_invoke(route, keyed)


# -- legacy call / send forms ------------------------------------------------------------


def test_call_a_service() -> None:
    assert parse("/Greeter/greet") == Invoke("Greeter", ("greet",))
    assert invoke("/Greeter/greet", keyed=False) == ResolvedInvoke("Greeter", None, "greet", False)


def test_call_an_object_or_workflow_handler() -> None:
    assert parse("/Counter/alice/add") == Invoke("Counter", ("alice", "add"))
    assert invoke("/Counter/alice/add", keyed=True) == ResolvedInvoke("Counter", "alice", "add", False)


def test_send_suffix() -> None:
    assert invoke("/Greeter/greet/send", keyed=False) == ResolvedInvoke("Greeter", None, "greet", True)
    assert invoke("/Counter/alice/add/send", keyed=True) == ResolvedInvoke(
        "Counter", "alice", "add", True
    )


def test_handler_named_send_is_not_a_send() -> None:
    assert invoke("/Greeter/send", keyed=False) == ResolvedInvoke("Greeter", None, "send", False)
    assert invoke("/Counter/alice/send", keyed=True) == ResolvedInvoke("Counter", "alice", "send", False)
    assert invoke("/Greeter/send/send", keyed=False) == ResolvedInvoke("Greeter", None, "send", True)


def test_key_is_url_decoded_per_segment() -> None:
    assert invoke("/Counter/a%2Fb%20c/add", keyed=True) == ResolvedInvoke(
        "Counter", "a/b c", "add", False
    )
    assert invoke("/Counter/%C3%A9t%C3%A9/add", keyed=True).key == "été"


def test_query_string_is_ignored_by_the_path_parser() -> None:
    assert invoke("/Greeter/greet/send?delay=10s", keyed=False) == ResolvedInvoke(
        "Greeter", None, "greet", True
    )


def test_trailing_slash_is_tolerated() -> None:
    assert parse("/Greeter/greet/") == Invoke("Greeter", ("greet",))


@pytest.mark.parametrize(
    ("path", "keyed"),
    [
        ("/Counter/add", True),  # an object needs a key
        ("/Greeter/a/greet", False),  # a service takes none
        ("/Greeter/a/greet/send", False),
        ("/Counter/alice/add/extra", True),
    ],
)
def test_invoke_path_that_does_not_fit_the_service_type(path: str, keyed: bool) -> None:
    route = parse(path)
    assert isinstance(route, Invoke)
    with pytest.raises(PathError) as e:
        resolve_invoke(route, keyed)
    assert e.value.status == 400 and e.value.message == BAD_INVOKE_PATH


# -- /restate/... -----------------------------------------------------------------------


def test_health() -> None:
    assert parse("/restate/health") == Health()


@pytest.mark.parametrize("verb", ["awakeables", "a"])
@pytest.mark.parametrize("action", ["resolve", "reject"])
def test_awakeables(verb: str, action: str) -> None:
    assert parse(f"/restate/{verb}/sign_1abc/{action}") == Awakeable("sign_1abc", action)


@pytest.mark.parametrize("action", ["attach", "output"])
def test_by_invocation_id(action: str) -> None:
    assert parse(f"/restate/invocation/{INV}/{action}") == ById(INV, action)
    # the v1.7 verb form
    assert parse(f"/restate/{action}/{INV}") == ById(INV, action)


@pytest.mark.parametrize("action", ["attach", "output"])
def test_by_idempotency_key_of_a_service(action: str) -> None:
    assert parse(f"/restate/invocation/Greeter/greet/my-key/{action}") == ByIdempotencyKey(
        "Greeter", None, "greet", "my-key", action
    )


@pytest.mark.parametrize("action", ["attach", "output"])
def test_by_idempotency_key_of_an_object(action: str) -> None:
    assert parse(f"/restate/invocation/Counter/al%20ice/add/my-key/{action}") == ByIdempotencyKey(
        "Counter", "al ice", "add", "my-key", action
    )


@pytest.mark.parametrize("action", ["attach", "output"])
def test_idempotency_key_segment_is_taken_verbatim(action: str) -> None:
    # as Restate 1.7.12 does: a call with header `idempotency-key: my%20key` is found
    # under /my%20key/, one with `my key` is not reachable by this path form at all
    assert parse(f"/restate/invocation/Counter/alice/add/my%20key/{action}") == ByIdempotencyKey(
        "Counter", "alice", "add", "my%20key", action
    )
    assert parse(f"/restate/invocation/Greeter/greet/a%2Fb/{action}") == ByIdempotencyKey(
        "Greeter", None, "greet", "a%2Fb", action
    )


@pytest.mark.parametrize("action", ["attach", "output"])
def test_workflow(action: str) -> None:
    assert parse(f"/restate/workflow/Signup/user%401/{action}") == ByWorkflow(
        "Signup", "user@1", action
    )


@pytest.mark.parametrize("verb", ["call", "send"])
def test_call_and_send_verbs(verb: str) -> None:
    route = parse(f"/restate/{verb}/Greeter/greet")
    assert route == Invoke("Greeter", ("greet",), forced=verb)
    assert resolve_invoke(route, keyed=False) == ResolvedInvoke(
        "Greeter", None, "greet", verb == "send"
    )
    route = parse(f"/restate/{verb}/Counter/alice/add")
    assert route == Invoke("Counter", ("alice", "add"), forced=verb)
    assert resolve_invoke(route, keyed=True) == ResolvedInvoke(
        "Counter", "alice", "add", verb == "send"
    )


def test_verb_forms_check_the_service_type() -> None:
    for path, keyed in [
        ("/restate/call/Counter/add", True),
        ("/restate/send/Greeter/a/greet", False),
    ]:
        route = parse(path)
        assert isinstance(route, Invoke)
        with pytest.raises(PathError) as e:
            resolve_invoke(route, keyed)
        assert e.value.status == 400


@pytest.mark.parametrize("verb", ["attach", "output", "lookup"])
def test_by_target_in_body(verb: str) -> None:
    assert parse(f"/restate/{verb}") == ByTargetBody(verb)


# -- bad paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "//",
        "/Greeter",  # one segment
        "/a/b/c/d/e",  # too many for a call
        "/Counter/alice/add/send/send",
        "/restate",
        "/restate/",
        "/restate/unknown",
        "/restate/health/extra",
        "/restate/awakeables/sign_1abc",
        "/restate/awakeables/sign_1abc/explode",
        "/restate/a/sign_1abc/resolve/more",
        "/restate/invocation",
        f"/restate/invocation/{INV}",
        f"/restate/invocation/{INV}/cancel",
        "/restate/invocation/Greeter/greet/attach",  # 3 args: neither form
        "/restate/invocation/Greeter/greet/key/delete",
        "/restate/invocation/Counter/alice/add/key/purge",
        "/restate/workflow/Signup/attach",
        "/restate/workflow/Signup/u1/run",
        "/restate/workflow/Signup/u1/attach/more",
        "/restate/call/Greeter",
        "/restate/send/Counter/alice/add/more",
        f"/restate/attach/{INV}/more",
        "/restate/lookup/x",
        "/restate/scope/s1/call/Greeter/greet",  # scoped calls need vqueues: unsupported
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(PathError) as e:
        parse(path)
    assert e.value.status == 400
    assert "bad path" in e.value.message
