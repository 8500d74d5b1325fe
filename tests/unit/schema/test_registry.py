"""SchemaRegistry rules, with discovery replaced by canned manifests (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from durably.schema import (
    AdminError,
    HandlerNotFound,
    SchemaRegistry,
    ServiceDefaults,
    ServiceNotFound,
)
from durably.schema.discovery_client import DiscoveryResponse
from durably.schema.ids import check_deployment_id

CT = "application/vnd.restate.endpointmanifest.v4+json"


def handler(name: str, ty: str | None = None, **extra: Any) -> dict[str, Any]:
    h: dict[str, Any] = {
        "name": name,
        "input": {"required": False, "contentType": "application/json", "jsonSchema": True},
        "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
    }
    if ty:
        h["ty"] = ty
    h.update(extra)
    return h


def service(name: str, ty: str, handlers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "ty": ty, "handlers": handlers, **extra}


def manifest(*services: dict[str, Any], mode: str = "BIDI_STREAM") -> dict[str, Any]:
    return {
        "protocolMode": mode,
        "minProtocolVersion": 5,
        "maxProtocolVersion": 7,
        "services": list(services),
    }


GREETER = service("Greeter", "SERVICE", [handler("greet")])
COUNTER = service(
    "Counter",
    "VIRTUAL_OBJECT",
    [handler("add", "EXCLUSIVE"), handler("get", "SHARED", inactivityTimeout=5000)],
    inactivityTimeout=30000,
)
SIGNUP = service(
    "Signup",
    "WORKFLOW",
    [
        handler("run", "WORKFLOW", workflowCompletionRetention=3_600_000),
        handler("status", "SHARED"),
    ],
)


class FakeDeployments:
    """Stands in for discovery: uri -> manifest; records calls."""

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, bool, dict[str, str]]] = []

    async def __call__(
        self, uri: str, use_http_11: bool, headers: dict[str, str]
    ) -> DiscoveryResponse:
        self.calls.append((uri, use_http_11, headers))
        m = self.manifests[uri]
        return DiscoveryResponse(
            content_type=CT,
            body=json.dumps(m).encode(),
            http_version="HTTP/1.1" if use_http_11 else "HTTP/2.0",
            sdk_version="restate-sdk-python/1.2.0",
        )


class Store:
    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.doc

    def save(self, doc: dict[str, Any]) -> None:
        # Through JSON, as a real store would: the document must be JSON-able.
        self.doc = json.loads(json.dumps(doc))
        self.saves += 1


@pytest.fixture
def fake() -> FakeDeployments:
    return FakeDeployments()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def registry(fake: FakeDeployments, store: Store) -> SchemaRegistry:
    return SchemaRegistry(store.load, store.save, discover_fn=fake)


A = "http://a:9080/"
B = "http://b:9080/"


async def test_register_new(registry: SchemaRegistry, fake: FakeDeployments, store: Store) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER, SIGNUP)
    d, services, created = await registry.register("http://a:9080", additional_headers={"X-K": "v"})
    assert created
    assert check_deployment_id(d.id) is None
    assert d.uri == A
    assert d.protocol_mode == "bidi" and d.http_version == "HTTP/2.0"
    assert d.additional_headers == {"x-k": "v"}
    assert d.service_names == ("Greeter", "Counter", "Signup")
    assert d.manifest_raw == fake.manifests[A]
    assert fake.calls == [(A, False, {"x-k": "v"})]
    assert [(s.name, s.ty, s.revision, s.deployment_id) for s in services] == [
        ("Greeter", "service", 1, d.id),
        ("Counter", "virtual_object", 1, d.id),
        ("Signup", "workflow", 1, d.id),
    ]
    assert store.saves == 1
    g = registry.get_service("Greeter")
    assert g.public and g.idempotency_retention_ms == 86_400_000
    assert g.journal_retention_ms == 86_400_000
    assert g.inactivity_timeout_ms == 60_000 and g.abort_timeout_ms == 600_000
    assert g.workflow_completion_retention_ms is None
    assert registry.get_service("Signup").workflow_completion_retention_ms == 3_600_000


async def test_same_uri_without_force_returns_existing(
    registry: SchemaRegistry, fake: FakeDeployments, store: Store
) -> None:
    fake.manifests[A] = manifest(GREETER)
    d1, _, _ = await registry.register(A)
    # Even a changed manifest: Restate 1.7 answers with the existing deployment, untouched,
    # without contacting the deployment.
    fake.manifests[A] = manifest(GREETER, COUNTER)
    d2, services, created = await registry.register("http://a:9080")
    assert not created
    assert d2 == d1
    assert [s.name for s in services] == ["Greeter"]
    assert len(fake.calls) == 1
    assert store.saves == 1
    assert registry.find_service("Counter") is None


async def test_force_replaces_in_place_and_bumps(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER)
    d1, _, _ = await registry.register(A)
    fake.manifests[A] = manifest(GREETER)
    d2, services, created = await registry.register(A, force=True)
    assert not created
    assert d2.id == d1.id
    assert [(s.name, s.revision) for s in services] == [("Greeter", 2)]
    # Counter only existed in the replaced manifest.
    assert registry.find_service("Counter") is None
    assert len(registry.list_deployments()) == 1


async def test_new_deployment_bumps_revision_and_keeps_old(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER)
    fake.manifests[B] = manifest(GREETER)
    da, _, _ = await registry.register(A)
    db, _, _ = await registry.register(B)
    g = registry.get_service("Greeter")
    assert (g.revision, g.deployment_id) == (2, db.id)
    assert registry.get_service("Counter").deployment_id == da.id
    assert da.id in {d.id for d in registry.list_deployments()}
    # In-flight invocations pinned to A still resolve against A's definition.
    s, h, d = registry.resolve_target("Greeter", "greet", deployment_id=da.id)
    assert (s.revision, d.id, h.name) == (1, da.id, "greet")
    assert [x.revision for x in registry.services_of(da)] == [1, 1]


async def test_type_change_needs_breaking_or_force(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(GREETER)
    fake.manifests[B] = manifest(service("Greeter", "VIRTUAL_OBJECT", [handler("greet")]))
    await registry.register(A)
    with pytest.raises(AdminError) as e:
        await registry.register(B)
    assert e.value.status == 409
    assert e.value.restate_code == "META0006"
    assert "changing the service type" in e.value.message
    _, services, _ = await registry.register(B, breaking=True)
    assert services[0].ty == "virtual_object" and services[0].revision == 2


async def test_dry_run(registry: SchemaRegistry, fake: FakeDeployments, store: Store) -> None:
    fake.manifests[A] = manifest(GREETER)
    d, services, created = await registry.register(A, dry_run=True)
    assert created and services[0].revision == 1
    assert registry.list_deployments() == [] and registry.list_services() == []
    assert store.saves == 0


async def test_remove_deployment(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER)
    fake.manifests[B] = manifest(GREETER, SIGNUP)
    da, _, _ = await registry.register(A)
    db, _, _ = await registry.register(B)
    with pytest.raises(AdminError) as e:
        registry.remove_deployment(db.id)
    assert e.value.status == 501
    registry.remove_deployment(db.id, force=True)
    g = registry.get_service("Greeter")
    assert (g.revision, g.deployment_id) == (1, da.id)
    assert registry.find_service("Signup") is None
    assert registry.find_deployment(db.id) is None
    with pytest.raises(AdminError) as e:
        registry.get_deployment(db.id)
    assert e.value.status == 404


async def test_modify_service(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER, SIGNUP)
    await registry.register(A)
    generation = registry.generation
    s = registry.modify_service(
        "Counter",
        public=False,
        idempotency_retention="1h",
        journal_retention="PT30M",
        inactivity_timeout=90_000,
        abort_timeout="2 min",
    )
    assert registry.generation == generation + 1
    assert not s.public
    assert s.idempotency_retention_ms == 3_600_000
    assert s.journal_retention_ms == 1_800_000
    assert s.inactivity_timeout_ms == 90_000
    assert s.abort_timeout_ms == 120_000
    assert registry.get_service("Counter") == s
    with pytest.raises(AdminError) as e:
        registry.modify_service("Counter", workflow_completion_retention="1d")
    assert e.value.status == 400
    assert (
        registry.modify_service(
            "Signup", workflow_completion_retention="2d"
        ).workflow_completion_retention_ms
        == 172_800_000
    )
    with pytest.raises(AdminError) as e:
        registry.modify_service("Nope", public=True)
    assert e.value.status == 404
    with pytest.raises(AdminError) as e:
        registry.modify_service("Counter", abort_timeout="1 month")
    assert e.value.status == 400


async def test_patch_is_per_revision(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    fake.manifests[A] = manifest(COUNTER)
    fake.manifests[B] = manifest(COUNTER)
    await registry.register(A)
    registry.modify_service("Counter", public=False, abort_timeout="1h")
    await registry.register(B)
    c = registry.get_service("Counter")
    assert c.public and c.abort_timeout_ms == 600_000 and c.revision == 2


async def test_handler_options_precedence(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    svc = service(
        "Rich",
        "VIRTUAL_OBJECT",
        [
            handler(
                "look",
                "SHARED",
                inactivityTimeout=7000,
                journalRetention=7_200_000,
                idempotencyRetention=5_400_000,
                ingressPrivate=True,
                retryPolicyInitialInterval=200,
                retryPolicyMaxAttempts=3,
            ),
            handler("plain", "EXCLUSIVE"),
        ],
        inactivityTimeout=20000,
        abortTimeout=120000,
        journalRetention=18_000_000,
        enableLazyState=True,
        retryPolicyMaxInterval=10_000,
        retryPolicyOnMaxAttempts="KILL",
    )
    fake.manifests[A] = manifest(svc)
    await registry.register(A)
    rich = registry.get_service("Rich")
    look = rich.handler_options("look")
    assert not look.public  # handler is ingress-private
    assert look.inactivity_timeout_ms == 7000  # handler > service
    assert look.abort_timeout_ms == 120_000  # service > default
    assert look.journal_retention_ms == 7_200_000
    assert look.idempotency_retention_ms == 5_400_000
    assert look.enable_lazy_state is True
    rp = look.retry_policy
    assert (rp.initial_interval_ms, rp.max_attempts, rp.max_interval_ms, rp.on_max_attempts) == (
        200,
        3,
        10_000,
        "kill",
    )
    assert rp.exponentiation_factor == 2.0  # default
    plain = rich.handler_options("plain")
    assert plain.public and plain.inactivity_timeout_ms == 20_000
    assert plain.idempotency_retention_ms == 86_400_000
    # PATCH on the service changes what handlers inherit, not what they override.
    registry.modify_service("Rich", inactivity_timeout="1m", public=False)
    rich = registry.get_service("Rich")
    assert rich.handler_options("look").inactivity_timeout_ms == 7000
    assert rich.handler_options("plain").inactivity_timeout_ms == 60_000
    assert not rich.handler_options("plain").public
    with pytest.raises(HandlerNotFound):
        rich.handler_options("nope")


async def test_request_response_ignores_inactivity(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(COUNTER, mode="REQUEST_RESPONSE")
    d, _, _ = await registry.register(A, use_http_11=True)
    assert d.protocol_mode == "request_response" and d.http_version == "HTTP/1.1"
    c = registry.get_service("Counter")
    assert c.inactivity_timeout_ms == 0
    assert c.handler_options("get").inactivity_timeout_ms == 0
    # set through PATCH /services: kept (and reported), never applied, as Restate does
    c = registry.modify_service("Counter", inactivity_timeout="90s")
    assert c.inactivity_timeout_ms == 0 and c.inactivity_timeout_configured_ms == 90_000
    assert c.handler_options("get").inactivity_timeout_ms == 0


async def test_workflow_retention_only_on_run(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(SIGNUP)
    await registry.register(A)
    s = registry.get_service("Signup")
    assert s.handler_options("run").workflow_completion_retention_ms == 3_600_000
    assert s.handler_options("status").workflow_completion_retention_ms is None


async def test_custom_defaults(fake: FakeDeployments, store: Store) -> None:
    reg = SchemaRegistry(
        store.load,
        store.save,
        discover_fn=fake,
        defaults=ServiceDefaults(idempotency_retention_ms=1000, abort_timeout_ms=2000),
    )
    fake.manifests[A] = manifest(GREETER)
    await reg.register(A)
    g = reg.get_service("Greeter")
    assert (g.idempotency_retention_ms, g.abort_timeout_ms) == (1000, 2000)


async def test_resolve_target(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    fake.manifests[A] = manifest(GREETER, COUNTER)
    d, _, _ = await registry.register(A)
    s, h, dep = registry.resolve_target("Counter", "add")
    assert (s.name, h.name, h.ty, dep.id) == ("Counter", "add", "exclusive", d.id)
    with pytest.raises(ServiceNotFound) as e:
        registry.resolve_target("Nope", "x")
    assert e.value.status == 404
    assert e.value.message == (
        "service 'Nope' not found, make sure to register the service before calling it."
    )
    with pytest.raises(HandlerNotFound) as e2:
        registry.resolve_target("Greeter", "nope")
    assert "the handler 'nope' was not found" in e2.value.message


async def test_private_service_with_public_handler_is_refused(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    fake.manifests[A] = manifest(
        service("Mix", "SERVICE", [handler("pub", ingressPrivate=False)], ingressPrivate=True)
    )
    with pytest.raises(AdminError) as e:
        await registry.register(A)
    assert e.value.status == 400
    assert "The service Mix is private, but the pub is explicitly set as public" in e.value.message


async def test_bad_manifest(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    fake.manifests[A] = {"minProtocolVersion": 5, "maxProtocolVersion": 7, "services": []}
    with pytest.raises(AdminError) as e:
        await registry.register(A)
    assert e.value.status == 500 and e.value.restate_code == "META0013"
    assert "protocolMode" in e.value.message
    fake.manifests[B] = {**manifest(GREETER), "minProtocolVersion": 1, "maxProtocolVersion": 2}
    with pytest.raises(AdminError) as e:
        await registry.register(B)
    assert e.value.restate_code == "META0012"


async def test_bad_uri(registry: SchemaRegistry) -> None:
    for uri in ("x", "ftp://a:1/", ""):
        with pytest.raises(AdminError) as e:
            await registry.register(uri)
        assert e.value.status == 400


async def test_persistence_round_trip(fake: FakeDeployments, store: Store) -> None:
    reg = SchemaRegistry(store.load, store.save, discover_fn=fake)
    fake.manifests[A] = manifest(GREETER, COUNTER, SIGNUP)
    fake.manifests[B] = manifest(GREETER, mode="REQUEST_RESPONSE")
    await reg.register(A, additional_headers={"authorization": "Bearer x"})
    await reg.register(B, use_http_11=True)
    reg.modify_service("Counter", public=False, idempotency_retention="3h")
    reg.modify_service("Greeter", inactivity_timeout="2m")  # Greeter is B's: request/response

    again = SchemaRegistry(store.load, store.save, discover_fn=fake)
    assert again.list_deployments() == reg.list_deployments()
    assert again.list_services() == reg.list_services()
    c = again.get_service("Counter")
    assert not c.public and c.idempotency_retention_ms == 10_800_000
    g = again.get_service("Greeter")
    assert g.inactivity_timeout_ms == 0 and g.inactivity_timeout_configured_ms == 120_000
    # And what is restored keeps working: a further PATCH, a removal.
    again.modify_service("Counter", abort_timeout="1m")
    assert again.get_service("Counter").idempotency_retention_ms == 10_800_000
    b = again.find_deployment_by_uri(B)
    assert b is not None
    again.remove_deployment(b.id, force=True)
    assert again.get_service("Greeter").revision == 1


def test_empty_store_loads_empty() -> None:
    reg = SchemaRegistry(lambda: None, lambda doc: None)
    assert reg.list_deployments() == [] and reg.list_services() == []
    with pytest.raises(AdminError):
        reg.get_service("x")


async def test_listeners(registry: SchemaRegistry, fake: FakeDeployments) -> None:
    seen: list[int] = []
    registry.add_listener(lambda: seen.append(registry.generation))
    fake.manifests[A] = manifest(GREETER)
    await registry.register(A)
    registry.modify_service("Greeter", public=False)
    assert seen == [1, 2]


async def test_engine_view_follows_registry_changes(
    registry: SchemaRegistry, fake: FakeDeployments
) -> None:
    """server.RegistrySchema caches targets and deployments by the registry's generation."""
    from durably.engine.engine import TargetError
    from durably.server import RegistrySchema

    fake.manifests[A] = manifest(GREETER, COUNTER, SIGNUP)
    d, _, _ = await registry.register(A)
    schema = RegistrySchema(registry)
    target, options = schema.target("Counter", "add", "k")
    assert (target.service_ty, target.handler_ty, target.key) == ("virtual_object", "exclusive", "k")
    assert options.inactivity_timeout_ms == 30_000 and options.public
    assert schema.target("Counter", "add", "k2")[1] is options  # cached
    assert schema.target("Counter", "add", "k2")[0].key == "k2"
    # the key rules still apply to a cached target
    with pytest.raises(TargetError) as e:
        schema.target("Counter", "add", None)
    assert e.value.status == 400
    with pytest.raises(TargetError):
        schema.target("Greeter", "greet", "k")
    dep = schema.deployment(d.id)
    assert dep is not None and dep.uri == A
    assert schema.deployment(d.id) is dep
    assert schema.deployment("dp_unknown") is None

    registry.modify_service("Counter", public=False, inactivity_timeout=90_000)
    _, options = schema.target("Counter", "add", "k")
    assert options.inactivity_timeout_ms == 90_000 and not options.public

    registry.remove_deployment(d.id, force=True)
    with pytest.raises(TargetError) as e:
        schema.target("Counter", "add", "k")
    assert e.value.status == 404
    assert schema.deployment(d.id) is None
