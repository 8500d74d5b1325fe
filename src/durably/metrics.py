"""Prometheus metrics (`GET /metrics` on the admin port).

Counters and histograms are updated from a few places: the engine when an invocation is
created, an attempt ends, an invocation completes; the storage after each commit; an ASGI
wrapper around the ingress. Gauges (inbox depth, suspended invocations, pending timers) are
read from the engine's memory when Prometheus scrapes, on the event loop that owns it.

Each server has its own registry, so several servers in one process (tests) do not collide.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from durably.engine.engine import Engine

__all__ = ["Metrics", "NULL_METRICS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _EngineGauges(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self.metrics.engine
        inbox = GaugeMetricFamily(
            "durably_inbox_depth", "Invocations waiting in virtual object inboxes"
        )
        suspended = GaugeMetricFamily("durably_invocations_suspended", "Suspended invocations")
        timers = GaugeMetricFamily("durably_timers_pending", "Durable timers not fired yet")
        active = GaugeMetricFamily(
            "durably_invocations_active", "Unfinished invocations by status", labels=["status"]
        )
        if engine is not None:
            inbox.add_metric([], sum(len(q) for q in engine.inboxes.values()))
            by_status: dict[str, int] = {}
            for inv in list(engine.active.values()):
                by_status[inv.row.status] = by_status.get(inv.row.status, 0) + 1
            suspended.add_metric([], by_status.get("suspended", 0))
            timers.add_metric([], len(engine.timers))
            for status, n in sorted(by_status.items()):
                active.add_metric([status], n)
        yield inbox
        yield suspended
        yield timers
        yield active


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.engine: Engine | None = None
        self._children: dict[tuple[int, str, str], Any] = {}
        r = self.registry
        self.started = Counter(
            "durably_invocations_started", "Invocations created",
            ["service", "handler"], registry=r,
        )
        self.completed = Counter(
            "durably_invocations_completed", "Invocations completed (with any result)",
            ["service", "handler"], registry=r,
        )
        self.failed = Counter(
            "durably_invocations_failed", "Invocations completed with a terminal failure",
            ["service", "handler"], registry=r,
        )
        self.attempt_failures = Counter(
            "durably_attempt_failures", "Attempts that failed and will be retried or paused",
            ["service", "handler"], registry=r,
        )
        self.attempt_seconds = Histogram(
            "durably_attempt_duration_seconds", "Duration of one attempt (start to end)",
            ["service", "handler"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.ingress_seconds = Histogram(
            "durably_ingress_request_duration_seconds", "Ingress HTTP request latency",
            ["method", "status"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.commit_seconds = Histogram(
            "durably_storage_commit_duration_seconds", "Storage COMMIT latency (on the event loop)",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.commit_batch = Histogram(
            "durably_storage_commit_batch_size", "Writes grouped into one storage commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r,
        )
        self.sync_seconds = Histogram(
            "durably_storage_sync_duration_seconds",
            "fsync of the write-ahead log (off the event loop; effects wait for it)",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.gc_seconds = Histogram(
            "durably_gc_pause_seconds",
            "Python garbage-collector pauses (they stop the event loop)",
            ["generation"], buckets=(0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self._gc_started = 0.0
        r.register(_EngineGauges(self))

    # -- garbage collector -------------------------------------------------------------------

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds.labels(str(info["generation"])).observe(
                time.perf_counter() - self._gc_started
            )

    def watch_gc(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # -- hooks (cheap: called on hot paths) ------------------------------------------------

    def _child(self, metric: Any, a: str, b: str) -> Any:
        """`metric.labels(a, b)`, remembered: `labels()` validates and locks on every call."""
        key = (id(metric), a, b)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(a, b)
        return child

    def invocation_started(self, service: str, handler: str) -> None:
        self._child(self.started, service, handler).inc()

    def invocation_completed(self, service: str, handler: str, failed: bool) -> None:
        self._child(self.completed, service, handler).inc()
        if failed:
            self._child(self.failed, service, handler).inc()

    def attempt_ended(self, service: str, handler: str, started: float | None,
                      failed: bool) -> None:
        if started is not None:
            self._child(self.attempt_seconds, service, handler).observe(
                time.monotonic() - started
            )
        if failed:
            self._child(self.attempt_failures, service, handler).inc()

    def committed(self, seconds: float, batch: int) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_batch.observe(batch)

    def synced(self, seconds: float) -> None:
        """Called from the fsync thread (prometheus_client is thread-safe)."""
        self.sync_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- ASGI ------------------------------------------------------------------------------

    def wrap_ingress(self, app: Any) -> Any:
        """An ASGI app that times each ingress request."""
        histogram = self.ingress_seconds

        async def timed(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.monotonic()
            status = 0

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                self._child(histogram, scope.get("method", ""), str(status)).observe(
                    time.monotonic() - start
                )

        return timed


class _NullMetrics(Metrics):
    """Does nothing: the engine's default when no server wired real metrics."""

    def __init__(self) -> None:
        self.engine = None

    def invocation_started(self, service: str, handler: str) -> None:
        pass

    def invocation_completed(self, service: str, handler: str, failed: bool) -> None:
        pass

    def attempt_ended(self, service: str, handler: str, started: float | None,
                      failed: bool) -> None:
        pass

    def committed(self, seconds: float, batch: int) -> None:
        pass


NULL_METRICS: Metrics = _NullMetrics()
