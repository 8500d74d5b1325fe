"""Shared pytest fixtures.

Conformance tests (``tests/conformance``) use the module-scoped ``env`` fixture: one server
under test plus one services process per test module *and* transport mode. A module lists
the test services it needs in a module-level ``SERVICES = [...]`` and may set
``SERVER_OPTIONS = {"cleanup_interval": "1s"}``.

``DURABLY_TEST_TARGET`` picks the server: ``durably`` (default, ``python -m durably serve``)
or ``restate`` (the real Restate server from npm, used as the oracle).

Starting an environment (a services process, a server or a cluster of them, the
registration) takes longer than most modules' tests, so while one module's tests run, the
next two environments the session needs are started in the background (``_Prefetch``).
Only the start overlaps with tests: each module still gets an environment of its own,
started before it and stopped after it. ``DURABLY_TEST_PREFETCH=N`` starts N ahead, ``0``
none.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.support.harness import Env, start_env, stop_env  # noqa: E402

MODES = ["h2", "http1"]


def _module_env_starter(
    module: Any, mode: str, factory: pytest.TempPathFactory
) -> Callable[[], Env]:
    """What starts ``module``'s environment in ``mode`` (its directory made already)."""
    services = getattr(module, "SERVICES", None)
    if not services:
        raise pytest.UsageError(f"{module.__name__} must define SERVICES = [...]")
    options = getattr(module, "SERVER_OPTIONS", None)
    services_env = getattr(module, "SERVICES_ENV", None)
    name = module.__name__.rsplit(".", 1)[-1]
    base = factory.mktemp(f"{name}-{mode}")
    return lambda: start_env(
        base, services, mode, server_options=options, services_env=services_env
    )


class _Prefetch:
    """The ``env`` fixtures of the session in the order its tests use them, and the next
    ``depth`` of them started ahead, one after the other, in a background thread."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.order: list[tuple[Any, str]] = []  # (module, mode)
        self.keys: list[tuple[str, str]] = []
        self.ahead: dict[tuple[str, str], concurrent.futures.Future[Env]] = {}
        # one start at a time: two at once measured no faster on two loaded cores
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="env-prefetch")

    def plan(self, items: list[pytest.Item]) -> None:
        for item in items:
            defs = getattr(item, "_fixtureinfo", None)
            defs = defs.name2fixturedefs.get("env") if defs is not None else None
            if not defs or defs[-1].func is not env.__wrapped__:  # type: ignore[attr-defined]
                continue  # another directory's own ``env`` fixture
            mode = item.callspec.params["env"]  # type: ignore[attr-defined]
            key = (item.module.__name__, mode)  # type: ignore[attr-defined]
            if key not in self.keys:
                self.keys.append(key)
                self.order.append((item.module, mode))  # type: ignore[attr-defined]

    def take(self, module: Any, mode: str, factory: pytest.TempPathFactory) -> Env:
        """This module's environment (started ahead, or now); starts the next ones."""
        key = (module.__name__, mode)
        future = self.ahead.pop(key, None)
        if key in self.keys:
            i = self.keys.index(key)
            for nxt in range(i + 1, min(i + 1 + self.depth, len(self.keys))):
                if self.keys[nxt] not in self.ahead:
                    self.ahead[self.keys[nxt]] = self.pool.submit(
                        _module_env_starter(*self.order[nxt], factory)
                    )
        if future is None:
            return _module_env_starter(module, mode, factory)()
        return future.result()

    def close(self) -> None:
        """Stop what was started ahead and never used (a run stopped early, -x)."""
        for future in self.ahead.values():
            try:
                stop_env(future.result())
            except Exception:
                pass
        self.ahead.clear()
        self.pool.shutdown(wait=True)


# how many environments are started ahead
_PREFETCH_DEPTH = int(os.environ.get("DURABLY_TEST_PREFETCH", "2") or 0)
_prefetch = _Prefetch(_PREFETCH_DEPTH) if _PREFETCH_DEPTH > 0 else None


def pytest_collection_finish(session: pytest.Session) -> None:
    if _prefetch is not None:
        _prefetch.plan(session.items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _prefetch is not None:
        _prefetch.close()


@pytest.fixture(scope="module", params=MODES, ids=MODES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    """Server + services for this module, registered over HTTP/2 (``h2``: the SDK answers
    BIDI_STREAM) or with ``use_http_11: true`` (``http1``: REQUEST_RESPONSE)."""
    if _prefetch is not None:
        e = _prefetch.take(request.module, request.param, tmp_path_factory)
    else:
        e = _module_env_starter(request.module, request.param, tmp_path_factory)()
    try:
        yield e
    finally:
        stop_env(e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the server's and the services' log tails to failed conformance tests."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        e = getattr(item, "funcargs", {}).get("env")
        if isinstance(e, Env):
            try:
                rep.sections.append(("durably-test process logs", e.logs()))
            except Exception as exc:  # never hide the real failure
                rep.sections.append(("durably-test process logs", f"<could not read logs: {exc!r}>"))
