"""Shared pytest fixtures.

Conformance tests (``tests/conformance``) use the module-scoped ``env`` fixture: one server
under test plus one services process per test module *and* transport mode. A module lists
the test services it needs in a module-level ``SERVICES = [...]`` and may set
``SERVER_OPTIONS = {"cleanup_interval": "1s"}``.

``DURABLY_TEST_TARGET`` picks the server: ``durably`` (default, ``python -m durably serve``)
or ``restate`` (the real Restate server from npm, used as the oracle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.support.harness import Env, start_env, stop_env  # noqa: E402

MODES = ["h2", "http1"]


@pytest.fixture(scope="module", params=MODES, ids=MODES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    """Server + services for this module, registered over HTTP/2 (``h2``: the SDK answers
    BIDI_STREAM) or with ``use_http_11: true`` (``http1``: REQUEST_RESPONSE)."""
    services = getattr(request.module, "SERVICES", None)
    if not services:
        raise pytest.UsageError(f"{request.module.__name__} must define SERVICES = [...]")
    options = getattr(request.module, "SERVER_OPTIONS", None)
    services_env = getattr(request.module, "SERVICES_ENV", None)
    name = request.module.__name__.rsplit(".", 1)[-1]
    base = tmp_path_factory.mktemp(f"{name}-{request.param}")
    e = start_env(base, services, request.param, server_options=options, services_env=services_env)
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
