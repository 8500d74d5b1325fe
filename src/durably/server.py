"""`durably serve`: wires storage, schema registry, engine, invoker, ingress and admin."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from durably.config import ServerConfig
from durably.engine.engine import DeploymentInfo, Engine, HandlerOptions, TargetError
from durably.engine.model import Target
from durably.engine.retry import RetryPolicy
from durably.invoker.invoker import Invoker
from durably.storage.sqlite import SqliteStore, StorageError

log = logging.getLogger("durably")

REGISTRY_KEY = "schema_registry"


class StartupError(Exception):
    """A problem that stops the server from starting, reported as one clear line."""


class RegistrySchema:
    """The engine's view of the schema registry: targets with their effective options."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        # Effective options and deployment views, rebuilt only when the registry changes
        # (its `generation`): every invocation asks for them two or three times, and building
        # them costs more than the rest of creating an invocation's row.
        self._generation = -1
        self._targets: dict[tuple[str, str], tuple[str, str | None, HandlerOptions]] = {}
        self._deployments: dict[str, DeploymentInfo | None] = {}

    def _fresh(self) -> None:
        generation = getattr(self.registry, "generation", None)
        if generation is None or generation != self._generation:
            self._targets.clear()
            self._deployments.clear()
            self._generation = -1 if generation is None else generation

    def service_ty(self, service: str) -> str | None:
        svc = self.registry.find_service(service)
        return None if svc is None else str(svc.ty)

    def target(self, service: str, handler: str, key: str | None) -> tuple[Target, HandlerOptions]:
        service_ty, handler_ty, options = self._handler(service, handler)
        keyed = service_ty != "service"
        if keyed and key is None:
            raise TargetError(400, f"the service '{service}' needs a key")
        if not keyed and key is not None:
            raise TargetError(400, f"the service '{service}' does not take a key")
        return Target(service, handler, key, service_ty, handler_ty), options

    def _handler(self, service: str, handler: str) -> tuple[str, str | None, HandlerOptions]:
        """A handler's service type, handler type and effective options (cached)."""
        self._fresh()
        cached = self._targets.get((service, handler))
        if cached is not None:
            return cached
        svc = self.registry.find_service(service)
        if svc is None:
            raise TargetError(
                404,
                f"service '{service}' not found, make sure to register the service "
                "before calling it.",
            )
        h = svc.handler(handler)
        if h is None:
            raise TargetError(
                404,
                f"the service '{service}' exists, but the handler '{handler}' was not found, "
                "check that the handler exists in the latest registered service version.",
            )
        opts = svc.handler_options(h)
        rp = opts.retry_policy
        options = HandlerOptions(
            deployment_id=svc.deployment_id,
            inactivity_timeout_ms=opts.inactivity_timeout_ms,
            abort_timeout_ms=opts.abort_timeout_ms,
            idempotency_retention_ms=opts.idempotency_retention_ms,
            workflow_retention_ms=(
                opts.workflow_completion_retention_ms
                if opts.workflow_completion_retention_ms is not None
                else opts.idempotency_retention_ms
            ),
            journal_retention_ms=opts.journal_retention_ms,
            lazy_state=opts.enable_lazy_state,
            public=opts.public,
            retry=RetryPolicy(
                initial_interval_ms=rp.initial_interval_ms,
                factor=rp.exponentiation_factor,
                max_interval_ms=rp.max_interval_ms if rp.max_interval_ms is not None else 60_000,
                max_attempts=rp.max_attempts,
                on_max_attempts=rp.on_max_attempts,
            ),
            input_rules=h.input,
            output_content_type=h.output.content_type,
            output_set_content_type_if_empty=bool(h.output.set_content_type_if_empty),
        )
        entry = (svc.ty, h.ty, options)
        if self._generation >= 0:
            self._targets[(service, handler)] = entry
        return entry

    def deployment(self, deployment_id: str) -> DeploymentInfo | None:
        self._fresh()
        try:
            return self._deployments[deployment_id]
        except KeyError:
            pass
        info = self._deployment(deployment_id)
        if self._generation >= 0:
            self._deployments[deployment_id] = info
        return info

    def _deployment(self, deployment_id: str) -> DeploymentInfo | None:
        dep = self.registry.find_deployment(deployment_id)
        if dep is None:
            return None
        return DeploymentInfo(
            id=dep.id,
            uri=dep.uri,
            use_http_11=bool(dep.use_http_11),
            bidi=dep.protocol_mode == "bidi" and not dep.use_http_11,
            additional_headers=dict(dep.additional_headers or {}),
            max_protocol_version=int(dep.max_protocol_version),
            min_protocol_version=int(dep.min_protocol_version),
        )


def _listen(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"the {what} port {host}:{port} is already in use") from None
        raise StartupError(f"cannot listen on {host}:{port} for the {what}: {e.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `durably serve` handles signals itself.

    Its housekeeping tick (the `Date` header, the exit check) runs once a second instead of
    uvicorn's ten times: each tick wakes an idle process (a node serves two ports, so 20
    wake-ups a second), and setting `should_exit` wakes it at once instead."""

    _exit: asyncio.Event | None = None
    _should_exit = False

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._exit is not None:
            self._exit.set()

    async def main_loop(self) -> None:
        self._exit = asyncio.Event()
        counter = 0  # (a multiple of 10: on_tick refreshes the Date header each time)
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            # (not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that comes
            # as the wait ends, and the stop that sets `should_exit` then cancels this task;
            # uvicorn then waited for good for connections still open)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Durably:
    """A running server (used by `durably serve` and by tests that embed it)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Any = None  # SqliteStore, or PostgresStore with --store postgresql://
        self.engine: Engine | None = None
        self.invoker: Invoker | None = None
        self._servers: list[_Server] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.introspector: Any = None
        self.metrics: Any = None
        self.kafka: Any = None  # durably.kafka.service.KafkaSubscriptions
        self.signer: Any = None  # durably.security.identity: signs requests to services
        # set when the engine can no longer commit (disk full, I/O error): `serve` then
        # exits non-zero instead of reporting a normal shutdown
        self.fatal: BaseException | None = None
        self.cluster: Any = None  # a ClusterNode with --node-name (durably.cluster.node)
        self.tracing: Any = None  # durably.tracing.Tracing with --tracing-endpoint

    async def start(self) -> None:
        cfg = self.config
        from durably.security import wiring as security

        try:
            self.signer = security.load_signer(cfg.security)
        except ValueError as e:
            raise StartupError(str(e)) from None
        for warning in security.exposure_warnings(cfg.security, cfg.bind):
            log.warning("%s", warning)
        ingress_sock = _listen(cfg.bind, cfg.ingress_port, "ingress")
        admin_sock = _listen(cfg.bind, cfg.admin_port, "admin")
        if cfg.node_name is not None:
            # one of several nodes on one PostgreSQL: the cluster room decides when this
            # node opens the store and runs the engine, and forwards requests until then
            from durably.cluster.node import cluster_node

            self.cluster = cluster_node(cfg, self)
            try:
                apps = await self.cluster.start()
            except Exception as e:
                ingress_sock.close()
                admin_sock.close()
                raise StartupError(str(e).splitlines()[0] if str(e) else repr(e)) from None
        else:
            try:
                apps = await self.open_engine()
            except StartupError:
                ingress_sock.close()
                admin_sock.close()
                raise
        await self._serve_http(apps, ingress_sock, admin_sock)

    async def open_engine(self) -> tuple[Any, Any]:
        """Open the store, recover the engine; returns the ingress and admin apps."""
        cfg = self.config
        try:
            self.store = await _open_store(cfg, self.cluster)
            if self.cluster is not None:
                await self.cluster.attach(self.store)
        except StorageError as e:
            raise StartupError(str(e)) from None

        from durably.admin.app import create_admin_app
        from durably.ingress.app import IngressApp
        from durably.schema.registry import SchemaRegistry

        store = self.store

        def load() -> dict[str, Any] | None:
            import orjson

            raw = store.load_meta(REGISTRY_KEY)
            return None if raw is None else orjson.loads(raw)

        def save(doc: dict[str, Any]) -> None:
            import orjson

            store.save_meta(REGISTRY_KEY, orjson.dumps(doc))
            store.commit()

        from functools import partial

        from durably.schema.discovery_client import discover

        registry = SchemaRegistry(load, save, discover_fn=partial(discover, signer=self.signer))
        schema = RegistrySchema(registry)
        self.engine = engine = Engine(store, schema, enable_protocol_v7=cfg.enable_protocol_v7)
        from durably.metrics import Metrics

        self.metrics = metrics = Metrics()
        metrics.engine = engine
        engine.metrics = metrics
        store.on_commit = metrics.committed
        store.on_sync = metrics.synced
        engine.on_fatal = self._on_fatal
        if self.cluster is not None:
            self.cluster.prepare_engine(engine)  # the partitions it runs
        self.invoker = Invoker(
            engine, http1_max_connections=cfg.http1_max_connections, signer=self.signer
        )
        engine.invoker = self.invoker
        if cfg.tracing_endpoint:
            from durably.tracing import install

            engine.observer = self.tracing = install(cfg.tracing_endpoint)
        engine.recover()
        # what recovery loaded (every unfinished invocation) lives long: keep it out of the
        # garbage collector's full passes, whose pause grows with the objects they scan
        gc.collect()
        gc.freeze()
        metrics.watch_gc()

        ingress_app = metrics.wrap_ingress(IngressApp(engine, max_body=cfg.max_body_bytes))
        from durably.storage.introspection import Introspector

        if cfg.postgres_dsn is not None:
            from durably.storage.postgres_query import PostgresIntrospector

            self.introspector = PostgresIntrospector(store)
        else:
            self.introspector = Introspector(str(store.path))
        self.kafka = _kafka(engine, registry, cfg, metrics)
        admin_app = _admin_app(
            create_admin_app, registry, engine, cfg, self.introspector, metrics, self.kafka,
            act=getattr(self.cluster, "act_on_invocation", None),  # the UI's, on any node
        )
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        await self.kafka.start()
        return ingress_app, admin_app

    async def _serve_http(self, apps: tuple[Any, Any], ingress_sock: Any, admin_sock: Any) -> None:
        cfg = self.config
        from durably.security import wiring as security

        ingress_app, admin_app = security.guard_apps(*apps, cfg.security, cfg.bind)
        if self.cluster is not None:
            from durably.cluster.node import keep_authorization

            ingress_app, admin_app = keep_authorization(ingress_app), keep_authorization(admin_app)
        log_level = cfg.log_level if cfg.log_level != "info" else "warning"
        for app, sock in ((ingress_app, ingress_sock), (admin_app, admin_sock)):
            ucfg = uvicorn.Config(
                app,
                log_level=log_level,
                access_log=False,
                lifespan="off",
                loop="none",
                **security.uvicorn_options(cfg.security),
                server_header=False,  # as Restate: no `server` header
                # JSON logs: uvicorn's own lines go through our root handler too
                **({"log_config": None} if cfg.log_format == "json" else {}),
            )
            server = _Server(ucfg)
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not all(s.started for s in self._servers):
            if any(t.done() for t in self._tasks):
                raise StartupError("the HTTP servers failed to start")
            await asyncio.sleep(0.01)

    async def _sweep_loop(self) -> None:
        from durably.engine.cleanup import sweep_expired

        while True:
            await asyncio.sleep(self.config.cleanup_interval_s)
            if self.engine is not None:
                try:
                    sweep_expired(self.engine)
                except Exception:
                    log.exception("cleanup sweep failed")

    def _on_fatal(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self._stop.set()

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stopping = True  # requests cancelled from now on are answered 503
        if self.metrics is not None:
            self.metrics.unwatch_gc()
        for server in self._servers:
            server.should_exit = True
        if self.kafka is not None:
            await self.kafka.stop()
        if self.engine is not None:
            self.engine.shutdown()
        if self.invoker is not None:
            await self.invoker.close()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.introspector is not None:
            self.introspector.close()
        if self.store is not None:
            aclose = getattr(self.store, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                self.store.close()
        if self.cluster is not None:
            # after the last commit: hand the partitions over at once
            await self.cluster.stop(release=self.fatal is None)
        if self.tracing is not None:
            self.tracing.shutdown()


async def _open_store(cfg: ServerConfig, cluster: Any = None) -> Any:
    if cfg.postgres_dsn is None:
        return SqliteStore(cfg.data_dir, synchronous=cfg.sync.upper())
    from durably.storage.postgres import PostgresStore

    store = PostgresStore(cfg.postgres_dsn)
    if cluster is not None:
        cluster.prepare_store(store)  # which partitions' rows it loads
    await store.open()
    return store


def _admin_app(
    create_admin_app: Any,
    registry: Any,
    engine: Engine,
    cfg: ServerConfig,
    introspector: Any,
    metrics: Any,
    kafka: Any,
    act: Any = None,
) -> Any:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from durably.admin.invocations import invocation_routes
    from durably.admin.query import query_routes
    from durably.metrics import CONTENT_TYPE

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    scheme = "https" if cfg.security.tls else "http"
    ingress_url = f"{scheme}://{cfg.bind}:{cfg.ingress_port}/"
    from durably.admin.services import service_routes

    ui: list[Any] = []
    if cfg.ui:
        from durably.ui import ui_routes

        ui = ui_routes(engine, registry, introspector, read_only=cfg.ui_read_only,
                       ingress_url=ingress_url, act=act)
    routes = [
        *service_routes(engine, registry),
        *invocation_routes(engine),
        *query_routes(introspector),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = create_admin_app(
        registry, extra_routes=routes, ingress_endpoint=ingress_url, ui=ui, kafka=kafka
    )
    return _answer_after_commit(app, engine)


def _answer_after_commit(app: Any, engine: Engine) -> Any:
    """An admin change (a registered deployment, a service's options) is answered only once
    what it stored is durable: on PostgreSQL the commit finishes after the handler returns."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await app(scope, receive, send)
            return

        async def send_after_commit(message: Any) -> None:
            if message.get("type") == "http.response.start":
                await engine.committed()
            await send(message)

        await app(scope, receive, send_after_commit)

    return wrapped


def _kafka(engine: Engine, registry: Any, cfg: ServerConfig, metrics: Any) -> Any:
    """Kafka clusters and subscriptions (durably.kafka); consumers start with `start()`."""
    from durably.kafka.model import parse_cluster_arg
    from durably.kafka.service import KafkaSubscriptions

    try:
        static = [parse_cluster_arg(text) for text in cfg.kafka_clusters]
    except ValueError as e:
        raise StartupError(str(e)) from None
    kafka = KafkaSubscriptions(engine, registry, static, max_in_flight=cfg.kafka_max_in_flight)
    kafka.register_metrics(metrics.registry, node=cfg.node_name)
    return kafka


async def _serve(config: ServerConfig) -> int:
    server = Durably(config)
    try:
        await server.start()
    except StartupError as e:
        print(f"durably: {e}", file=sys.stderr)
        await server.stop()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    host = config.bind
    scheme = "https" if config.security.tls else "http"
    where = f"data {config.data_dir}"
    if config.postgres_dsn is not None:
        from durably.storage.postgres import describe_dsn

        where = f"store {describe_dsn(config.postgres_dsn)}"
    print(
        f"durably is ready: ingress {scheme}://{host}:{config.ingress_port}  "
        f"admin {scheme}://{host}:{config.admin_port}  {where}",
        flush=True,
    )
    await server.wait()
    if server.fatal is not None:
        await _stop_or_exit(server)
        print(
            f"durably: stopped: a storage commit failed ({server.fatal}); nothing after the "
            "last successful commit was acknowledged",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print("durably: shutting down", flush=True)
    await server.stop()
    return 0


# after a fatal error nothing more is acknowledged; a shutdown still waiting this long
# (a task deaf to its cancellation) must not keep the process, and under a cluster its
# partitions, from the supervisor that restarts it
FATAL_STOP_S = 30.0


async def _stop_or_exit(server: Durably) -> None:
    stopping = asyncio.ensure_future(server.stop())
    done, _ = await asyncio.wait({stopping}, timeout=FATAL_STOP_S)
    if done:
        stopping.result()
        return
    from durably.cluster.node import log_tasks

    log_tasks()  # what it waits on, for the report
    print(f"durably: stopped: {server.fatal}; the shutdown did not finish within "
          f"{FATAL_STOP_S:g} s", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(1)


def serve(config: ServerConfig) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config))
    return uvloop.run(_serve(config))
