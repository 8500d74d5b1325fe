"""The schema registry: registered deployments and the services they expose.

This is the single place the engine, the invoker, the ingress and the admin API ask "which
deployment serves Counter/add, with which options?". It follows Restate 1.7's rules, checked
against a real restate-server 1.7.12:

* Registering a URI that is already registered, without `force`, does not even contact the
  deployment: it answers with the existing deployment (HTTP 200), whatever the SDK serves now.
* With `force`, the deployment keeps its id, its manifest is replaced, and every service it
  exposes gets a new revision (even when nothing changed).
* A new URI exposing known services gives each of them a new revision served by the new
  deployment; older deployments stay addressable by id, because invocations that started on
  them stay pinned there.
* Changing a service's type (e.g. Service -> VirtualObject) needs `breaking` or `force`
  (409, META0006, otherwise).
* PATCH /services/{name} changes apply to the current revision only; a new revision starts
  again from what its manifest says.
* Removing a deployment needs `force` (Restate answers 501 without it). Services whose latest
  revision it served fall back to the highest revision still registered, or disappear.

Effective options per handler: the handler's own manifest option, else the service's value
(PATCHed, else the service manifest's), else the server default. Restate prints them the same
way: handler-level values only where the SDK set them, service-level values always.

Persistence is one JSON document, written through `save` after every change and read through
`load` at start-up; the storage layer decides where it lives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

import orjson

from durably.protocol.discovery import (
    EndpointManifest,
    HandlerManifest,
    ManifestError,
    ServiceManifest,
    parse_manifest,
)
from durably.schema.discovery_client import DiscoveryResponse, discover, normalize_uri
from durably.schema.durations import DurationError, parse_duration_ms
from durably.schema.errors import AdminError
from durably.schema.ids import new_deployment_id

__all__ = [
    "DEFAULT_SERVICE_OPTIONS",
    "Deployment",
    "HandlerNotFound",
    "HandlerOptions",
    "RetryPolicy",
    "SchemaRegistry",
    "Service",
    "ServiceDefaults",
    "ServiceNotFound",
    "TargetNotFound",
]

ProtocolMode = Literal["bidi", "request_response"]
ServiceType = Literal["service", "virtual_object", "workflow"]

_DAY_MS = 24 * 3600 * 1000
_DOC_FORMAT = 1

SERVICE_TYPE_NAMES: dict[str, str] = {
    "service": "Service",
    "virtual_object": "VirtualObject",
    "workflow": "Workflow",
}


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Invocation retry policy. Restate's default: 500 ms x2 up to 1 min, 70 attempts, pause."""

    initial_interval_ms: int = 500
    exponentiation_factor: float = 2.0
    max_attempts: int | None = 70
    max_interval_ms: int | None = 60_000
    on_max_attempts: Literal["pause", "kill"] = "pause"


@dataclass(frozen=True)
class ServiceDefaults:
    """Server-wide defaults, Restate's unless configured otherwise."""

    idempotency_retention_ms: int = _DAY_MS
    workflow_completion_retention_ms: int = _DAY_MS
    journal_retention_ms: int = _DAY_MS
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)


DEFAULT_SERVICE_OPTIONS = ServiceDefaults()


@dataclass(frozen=True)
class Deployment:
    id: str
    uri: str  # normalized: `http://host:port/`
    use_http_11: bool
    additional_headers: dict[str, str]
    protocol_mode: ProtocolMode
    min_protocol_version: int
    max_protocol_version: int
    created_at_ms: int
    manifest_raw: dict[str, Any] = field(repr=False)
    service_names: tuple[str, ...]
    # The revision each service got when this deployment registered it.
    service_revisions: dict[str, int] = field(default_factory=dict)
    http_version: str = "HTTP/2.0"
    sdk_version: str | None = None
    manifest_version: int = 4
    manifest: EndpointManifest | None = field(default=None, repr=False, compare=False)

    def service_manifest(self, name: str) -> ServiceManifest | None:
        if self.manifest is None:
            return None
        for s in self.manifest.services:
            if s.name == name:
                return s
        return None

    @property
    def request_response(self) -> bool:
        return self.protocol_mode == "request_response"


@dataclass(frozen=True)
class HandlerOptions:
    """What applies to one invocation of a handler, after all overrides."""

    public: bool
    idempotency_retention_ms: int
    journal_retention_ms: int
    # Only for a workflow's run handler; None elsewhere.
    workflow_completion_retention_ms: int | None
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    enable_lazy_state: bool
    retry_policy: RetryPolicy


@dataclass(frozen=True)
class Service:
    name: str
    ty: ServiceType
    revision: int
    deployment_id: str
    public: bool
    idempotency_retention_ms: int
    workflow_completion_retention_ms: int | None  # workflows only
    journal_retention_ms: int
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    manifest: ServiceManifest = field(repr=False)
    enable_lazy_state: bool = False
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    # The deployment speaks request/response: Restate ignores inactivity timeouts there.
    request_response: bool = False
    # An inactivity timeout set through PATCH /services on such a deployment: kept (Restate
    # reports it as "will not be applied", RT0021) but never applied.
    inactivity_timeout_configured_ms: int | None = None

    @property
    def type_name(self) -> str:
        """`Service`, `VirtualObject` or `Workflow`, as the admin API prints it."""
        return SERVICE_TYPE_NAMES[self.ty]

    @property
    def is_keyed(self) -> bool:
        return self.ty != "service"

    @property
    def handlers(self) -> tuple[HandlerManifest, ...]:
        return self.manifest.handlers

    def handler(self, name: str) -> HandlerManifest | None:
        return self.manifest.handler(name)

    def handler_public(self, handler: HandlerManifest) -> bool:
        # A handler can only hide itself; it cannot be public in a private service
        # (registration refuses that combination, as Restate does).
        return self.public and not handler.ingress_private

    def handler_options(self, name: str | HandlerManifest) -> HandlerOptions:
        """Effective options: handler manifest > service (PATCH, else manifest) > defaults."""
        h = self.handler(name) if isinstance(name, str) else name
        if h is None:
            raise HandlerNotFound(self.name, str(name))
        rp = self.retry_policy
        hrp = h.retry_policy
        if hrp is not None:
            rp = RetryPolicy(
                initial_interval_ms=_first(hrp.initial_interval_ms, rp.initial_interval_ms),
                exponentiation_factor=_first(hrp.exponentiation_factor, rp.exponentiation_factor),
                max_attempts=_first(hrp.max_attempts, rp.max_attempts),
                max_interval_ms=_first(hrp.max_interval_ms, rp.max_interval_ms),
                on_max_attempts=(
                    _on_max(hrp.on_max_attempts) if hrp.on_max_attempts else rp.on_max_attempts
                ),
            )
        inactivity = (
            0
            if self.request_response
            else _first(h.inactivity_timeout_ms, self.inactivity_timeout_ms)
        )
        return HandlerOptions(
            public=self.handler_public(h),
            idempotency_retention_ms=_first(
                h.idempotency_retention_ms, self.idempotency_retention_ms
            ),
            journal_retention_ms=_first(h.journal_retention_ms, self.journal_retention_ms),
            workflow_completion_retention_ms=(
                self.workflow_completion_retention_ms if h.ty == "workflow" else None
            ),
            inactivity_timeout_ms=inactivity,
            abort_timeout_ms=_first(h.abort_timeout_ms, self.abort_timeout_ms),
            enable_lazy_state=bool(_first(h.enable_lazy_state, self.enable_lazy_state)),
            retry_policy=rp,
        )


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _on_max(value: str | None) -> Literal["pause", "kill"]:
    return "kill" if (value or "").upper() == "KILL" else "pause"


class TargetNotFound(AdminError):
    """resolve_target() found no such service or handler. Messages match Restate's ingress."""


class ServiceNotFound(TargetNotFound):
    def __init__(self, service: str) -> None:
        super().__init__(
            404,
            f"service '{service}' not found, make sure to register the service before calling it.",
        )
        self.service = service


class HandlerNotFound(TargetNotFound):
    def __init__(self, service: str, handler: str) -> None:
        super().__init__(
            404,
            f"the service '{service}' exists, but the handler '{handler}' was not found, check "
            "that the handler exists in the latest registered service version.",
        )
        self.service = service
        self.handler = handler


# Fields PATCH /services can change, and the Service attribute each one sets.
_MODIFIABLE = {
    "public": "public",
    "idempotency_retention": "idempotency_retention_ms",
    "workflow_completion_retention": "workflow_completion_retention_ms",
    "journal_retention": "journal_retention_ms",
    "inactivity_timeout": "inactivity_timeout_ms",
    "abort_timeout": "abort_timeout_ms",
}


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


class SchemaRegistry:
    """Registered deployments and services; see the module docstring for the rules."""

    def __init__(
        self,
        load: Callable[[], dict[str, Any] | None],
        save: Callable[[dict[str, Any]], None],
        *,
        defaults: ServiceDefaults = DEFAULT_SERVICE_OPTIONS,
        discover_fn: Callable[..., Any] = discover,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._save = save
        self.defaults = defaults
        self._discover = discover_fn
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._deployments: dict[str, Deployment] = {}
        self._services: dict[str, Service] = {}
        # PATCHed values of each service's current revision, by Service attribute name.
        self._overrides: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        #: Bumped on every change, so callers can cache lookups cheaply.
        self.generation = 0
        doc = load()
        if doc:
            self._restore(doc)

    # -- queries -----------------------------------------------------------

    def list_deployments(self) -> list[Deployment]:
        return list(self._deployments.values())

    def find_deployment(self, deployment_id: str) -> Deployment | None:
        return self._deployments.get(deployment_id)

    def get_deployment(self, deployment_id: str) -> Deployment:
        d = self._deployments.get(deployment_id)
        if d is None:
            raise AdminError(404, f"The requested deployment '{deployment_id}' does not exist")
        return d

    def find_deployment_by_uri(self, uri: str) -> Deployment | None:
        uri = normalize_uri(uri)
        for d in self._deployments.values():
            if d.uri == uri:
                return d
        return None

    def list_services(self) -> list[Service]:
        return list(self._services.values())

    def find_service(self, name: str) -> Service | None:
        return self._services.get(name)

    def get_service(self, name: str) -> Service:
        s = self._services.get(name)
        if s is None:
            raise AdminError(404, f"The requested service '{name}' does not exist")
        return s

    def get_handler(self, service: str, handler: str) -> tuple[Service, HandlerManifest]:
        s = self._services.get(service)
        h = s.handler(handler) if s is not None else None
        if s is None or h is None:
            raise AdminError(
                404, f"The requested handler '{handler}' on service '{service}' does not exist"
            )
        return s, h

    def services_of(self, deployment: Deployment | str) -> list[Service]:
        """The services of one deployment, each at the revision this deployment registered.

        Where the deployment still serves a service's latest revision, that is the live record
        (with its PATCHed values); otherwise the view is rebuilt from the deployment's manifest.
        """
        d = self.get_deployment(deployment) if isinstance(deployment, str) else deployment
        out = []
        for name in d.service_names:
            live = self._services.get(name)
            if live is not None and live.deployment_id == d.id:
                out.append(live)
                continue
            sm = d.service_manifest(name)
            if sm is not None:
                out.append(self._build_service(d, sm, d.service_revisions.get(name, 1), {}))
        return out

    def resolve_target(
        self, service: str, handler: str, *, deployment_id: str | None = None
    ) -> tuple[Service, HandlerManifest, Deployment]:
        """Service, handler and deployment for an invocation.

        Without `deployment_id`: the latest revision (new invocations). With it: the handler as
        that deployment defines it (invocations pinned to an older deployment); the Service
        record is then the one of that deployment's revision.
        """
        if deployment_id is not None:
            d = self._deployments.get(deployment_id)
            if d is None:
                raise AdminError(
                    404, f"deployment '{deployment_id}' pinned by the invocation no longer exists"
                )
            live = self._services.get(service)
            if live is not None and live.deployment_id == d.id:
                s = live
            else:
                sm = d.service_manifest(service)
                if sm is None:
                    raise ServiceNotFound(service)
                s = self._build_service(d, sm, d.service_revisions.get(service, 1), {})
        else:
            found = self._services.get(service)
            if found is None:
                raise ServiceNotFound(service)
            s = found
            d = self._deployments[s.deployment_id]
        h = s.handler(handler)
        if h is None:
            raise HandlerNotFound(service, handler)
        return s, h, d

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after every change (e.g. to drop caches)."""
        self._listeners.append(callback)

    # -- registration ------------------------------------------------------

    async def register(
        self,
        uri: str,
        *,
        use_http_11: bool = False,
        additional_headers: Mapping[str, str] | None = None,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
    ) -> tuple[Deployment, list[Service], bool]:
        """Discover and register the deployment at `uri`.

        Returns (deployment, its services, created). `created` is False when the URI was
        already registered (the admin API answers 200 instead of 201). With `dry_run` nothing
        is stored, but the result shows what would have been.
        """
        uri = normalize_uri(uri)
        headers = _check_headers(additional_headers)
        async with self._lock:
            existing = self.find_deployment_by_uri(uri)
            if existing is not None and not force:
                return existing, self.services_of(existing), False

            resp: DiscoveryResponse = await self._discover(uri, use_http_11, headers)
            manifest = _parse(resp)
            _validate_visibility(manifest)
            now = self._clock_ms()
            if not (breaking or force):
                for sm in manifest.services:
                    current = self._services.get(sm.name)
                    if current is not None and current.ty != sm.ty:
                        raise AdminError(
                            409,
                            f"[META0006] detected a new service revision for '{sm.name}' "
                            "changing the service type from previous revision. Service type "
                            "cannot be changed across revisions.",
                            "META0006",
                        )

            dep_id = existing.id if existing is not None else new_deployment_id(now)
            revisions = {
                sm.name: (self._services[sm.name].revision if sm.name in self._services else 0) + 1
                for sm in manifest.services
            }
            deployment = Deployment(
                id=dep_id,
                uri=uri,
                use_http_11=use_http_11,
                additional_headers=headers,
                protocol_mode=manifest.protocol_mode,
                min_protocol_version=manifest.min_protocol_version,
                max_protocol_version=manifest.max_protocol_version,
                created_at_ms=now,
                manifest_raw=orjson.loads(resp.body),
                service_names=tuple(sm.name for sm in manifest.services),
                service_revisions=revisions,
                http_version=resp.http_version,
                sdk_version=resp.sdk_version,
                manifest_version=manifest.manifest_version,
                manifest=manifest,
            )
            services = [
                self._build_service(deployment, sm, revisions[sm.name], {})
                for sm in manifest.services
            ]
            if dry_run:
                return deployment, services, existing is None

            if existing is not None:
                del self._deployments[existing.id]
            self._deployments[dep_id] = deployment
            for s in services:
                self._services[s.name] = s
                self._overrides.pop(s.name, None)
            if existing is not None:
                # Services the old manifest had and the new one dropped.
                dropped = [n for n in existing.service_names if n not in revisions]
                self._fall_back(dropped, removed_id=None)
            self._changed()
            return deployment, services, existing is None

    def remove_deployment(self, deployment_id: str, force: bool = False) -> Deployment:
        """Forget a deployment. Restate only supports this with force (501 otherwise)."""
        d = self.get_deployment(deployment_id)
        if not force:
            raise AdminError(
                501,
                "removing a deployment without force is not supported; pass force=true "
                "(invocations pinned to it will fail)",
            )
        del self._deployments[d.id]
        self._fall_back([n for n in d.service_names], removed_id=d.id)
        self._changed()
        return d

    def _fall_back(self, names: Iterable[str], removed_id: str | None) -> None:
        for name in names:
            live = self._services.get(name)
            if live is None:
                continue
            if removed_id is not None and live.deployment_id != removed_id:
                continue
            if removed_id is None and live.deployment_id in self._deployments:
                d = self._deployments[live.deployment_id]
                if name in d.service_names:
                    continue
            best: tuple[int, Deployment] | None = None
            for d in self._deployments.values():
                rev = d.service_revisions.get(name)
                if rev is not None and name in d.service_names and (best is None or rev > best[0]):
                    best = (rev, d)
            self._overrides.pop(name, None)
            if best is None:
                del self._services[name]
            else:
                sm = best[1].service_manifest(name)
                assert sm is not None
                self._services[name] = self._build_service(best[1], sm, best[0], {})

    # -- modification ------------------------------------------------------

    def modify_service(
        self,
        name: str,
        *,
        public: bool | None = None,
        idempotency_retention: str | int | timedelta | None = None,
        workflow_completion_retention: str | int | timedelta | None = None,
        journal_retention: str | int | timedelta | None = None,
        inactivity_timeout: str | int | timedelta | None = None,
        abort_timeout: str | int | timedelta | None = None,
    ) -> Service:
        """PATCH /services/{name}. Durations: friendly/ISO strings, int ms or timedelta."""
        s = self._services.get(name)
        if s is None:
            raise AdminError(404, f"not found in the schema registry: service with name '{name}'")
        changes: dict[str, Any] = {}
        if public is not None:
            if not isinstance(public, bool):
                raise AdminError(400, f"public: expected a boolean, got {public!r}")
            changes["public"] = public
        for key, value in (
            ("idempotency_retention", idempotency_retention),
            ("workflow_completion_retention", workflow_completion_retention),
            ("journal_retention", journal_retention),
            ("inactivity_timeout", inactivity_timeout),
            ("abort_timeout", abort_timeout),
        ):
            if value is not None:
                changes[_MODIFIABLE[key]] = _to_ms(key, value)
        if s.request_response and "inactivity_timeout_ms" in changes:
            changes["inactivity_timeout_configured_ms"] = changes.pop("inactivity_timeout_ms")
        if "workflow_completion_retention_ms" in changes and s.ty != "workflow":
            raise AdminError(
                400, f"modifying retention time for service type {s.type_name} is unsupported"
            )
        if not changes:
            return s
        updated = replace(s, **changes)
        self._services[name] = updated
        self._overrides.setdefault(name, {}).update(changes)
        self._changed()
        return updated

    # -- internals ---------------------------------------------------------

    def _build_service(
        self, d: Deployment, sm: ServiceManifest, revision: int, overrides: Mapping[str, Any]
    ) -> Service:
        df = self.defaults
        wf_ms: int | None = None
        if sm.ty == "workflow":
            wf_ms = df.workflow_completion_retention_ms
            for h in sm.handlers:
                if h.ty == "workflow" and h.workflow_completion_retention_ms is not None:
                    wf_ms = h.workflow_completion_retention_ms
        rp = df.retry_policy
        mrp = sm.retry_policy
        if mrp is not None:
            rp = RetryPolicy(
                initial_interval_ms=_first(mrp.initial_interval_ms, rp.initial_interval_ms),
                exponentiation_factor=_first(mrp.exponentiation_factor, rp.exponentiation_factor),
                max_attempts=_first(mrp.max_attempts, rp.max_attempts),
                max_interval_ms=_first(mrp.max_interval_ms, rp.max_interval_ms),
                on_max_attempts=(
                    _on_max(mrp.on_max_attempts) if mrp.on_max_attempts else rp.on_max_attempts
                ),
            )
        s = Service(
            name=sm.name,
            ty=sm.ty,
            revision=revision,
            deployment_id=d.id,
            public=not bool(sm.ingress_private),
            idempotency_retention_ms=_first(
                sm.idempotency_retention_ms, df.idempotency_retention_ms
            ),
            workflow_completion_retention_ms=wf_ms,
            journal_retention_ms=_first(sm.journal_retention_ms, df.journal_retention_ms),
            inactivity_timeout_ms=(
                0
                if d.request_response
                else _first(sm.inactivity_timeout_ms, df.inactivity_timeout_ms)
            ),
            abort_timeout_ms=_first(sm.abort_timeout_ms, df.abort_timeout_ms),
            manifest=sm,
            enable_lazy_state=bool(sm.enable_lazy_state),
            retry_policy=rp,
            request_response=d.request_response,
        )
        if overrides:
            s = replace(s, **overrides)
        return s

    def _changed(self) -> None:
        self.generation += 1
        self._save(self.to_document())
        for cb in list(self._listeners):
            cb()

    def to_document(self) -> dict[str, Any]:
        """The whole registry as one JSON-able document (what `save` receives)."""
        return {
            "format": _DOC_FORMAT,
            "deployments": [
                {
                    "id": d.id,
                    "uri": d.uri,
                    "use_http_11": d.use_http_11,
                    "additional_headers": dict(d.additional_headers),
                    "protocol_mode": d.protocol_mode,
                    "min_protocol_version": d.min_protocol_version,
                    "max_protocol_version": d.max_protocol_version,
                    "created_at_ms": d.created_at_ms,
                    "http_version": d.http_version,
                    "sdk_version": d.sdk_version,
                    "manifest_version": d.manifest_version,
                    "service_revisions": dict(d.service_revisions),
                    "manifest": d.manifest_raw,
                }
                for d in self._deployments.values()
            ],
            "services": [
                {
                    "name": s.name,
                    "revision": s.revision,
                    "deployment_id": s.deployment_id,
                    "overrides": dict(self._overrides.get(s.name, {})),
                }
                for s in self._services.values()
            ],
        }

    def reload(self, doc: Mapping[str, Any]) -> None:
        """Replace the registry with `doc` (written by another node of a cluster); nothing
        is saved, the listeners are told."""
        deployments, services, overrides = self._deployments, self._services, self._overrides
        self._deployments, self._services, self._overrides = {}, {}, {}
        try:
            self._restore(doc)
        except Exception:
            self._deployments, self._services, self._overrides = deployments, services, overrides
            raise
        self.generation += 1
        for cb in list(self._listeners):
            cb()

    def _restore(self, doc: Mapping[str, Any]) -> None:
        if doc.get("format") != _DOC_FORMAT:
            raise ValueError(f"unknown schema registry document format {doc.get('format')!r}")
        for raw in doc.get("deployments", []):
            ct = f"application/vnd.restate.endpointmanifest.v{raw['manifest_version']}+json"
            manifest = parse_manifest(ct, orjson.dumps(raw["manifest"]))
            d = Deployment(
                id=raw["id"],
                uri=raw["uri"],
                use_http_11=bool(raw["use_http_11"]),
                additional_headers=dict(raw.get("additional_headers") or {}),
                protocol_mode=raw["protocol_mode"],
                min_protocol_version=raw["min_protocol_version"],
                max_protocol_version=raw["max_protocol_version"],
                created_at_ms=raw["created_at_ms"],
                manifest_raw=raw["manifest"],
                service_names=tuple(s.name for s in manifest.services),
                service_revisions={k: int(v) for k, v in raw["service_revisions"].items()},
                http_version=raw.get("http_version", "HTTP/2.0"),
                sdk_version=raw.get("sdk_version"),
                manifest_version=raw["manifest_version"],
                manifest=manifest,
            )
            self._deployments[d.id] = d
        for raw in doc.get("services", []):
            d = self._deployments[raw["deployment_id"]]
            sm = d.service_manifest(raw["name"])
            if sm is None:
                raise ValueError(
                    f"schema registry document: service {raw['name']!r} is not in deployment {d.id}"
                )
            overrides = dict(raw.get("overrides") or {})
            self._services[sm.name] = self._build_service(d, sm, int(raw["revision"]), overrides)
            if overrides:
                self._overrides[sm.name] = overrides


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _parse(resp: DiscoveryResponse) -> EndpointManifest:
    try:
        return parse_manifest(resp.content_type, resp.body)
    except ManifestError as e:
        text = str(e)
        code = "META0012" if "protocol version" in text else "META0013"
        raise AdminError(
            500, f"[{code}] [{code}] received a bad response from the SDK: {text}", code
        ) from None


def _validate_visibility(manifest: EndpointManifest) -> None:
    for sm in manifest.services:
        if not sm.ingress_private:
            continue
        for h in sm.handlers:
            if h.ingress_private is False:
                raise AdminError(
                    400,
                    f"The service {sm.name} is private, but the {h.name} is explicitly set as "
                    "public. This is not supported. Please make the service public, and hide "
                    "the individual handlers",
                )


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise AdminError(400, "additional_headers must map header names to string values")
        if any(c in k for c in " \t\r\n:") or any(c in v for c in "\r\n"):
            raise AdminError(400, f"invalid additional header {k!r}")
        out[k.lower()] = v
    return out


def _to_ms(key: str, value: str | int | timedelta) -> int:
    if isinstance(value, bool):
        raise AdminError(400, f"{key}: expected a duration, got {value!r}")
    if isinstance(value, timedelta):
        ms = int(value.total_seconds() * 1000)
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        try:
            ms = parse_duration_ms(value)
        except DurationError as e:
            raise AdminError(400, f"{key}: {e}") from None
    else:
        raise AdminError(400, f"{key}: expected a duration string, got {value!r}")
    if ms < 0:
        raise AdminError(400, f"{key}: negative durations are not allowed")
    return ms
