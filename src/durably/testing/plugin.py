"""The pytest plugin (entry point ``pytest11``: ``durably``): the ``durably_server`` fixture.

Loaded into every pytest session once durably is installed, so it imports nothing heavy
until a test module names the fixture. The server takes most of a second to start: it is
launched as soon as collection meets a test module whose text names ``durably_server``
(before that module is imported), so that it starts while the tests' own imports run; the
fixture then only waits for it. A server launched that way and never used is stopped at the
end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from durably.testing.server import DurablyServer

_FIXTURE = "durably_server"
_early: dict[str, Any] = {}  # "server": a DurablyServer launched during collection


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> None:
    if "server" in _early or parent.config.getoption("collectonly", False):
        return
    try:
        named = _FIXTURE in module_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if named:
        from durably.testing.server import DurablyServer

        server = DurablyServer()
        server.launch()
        _early["server"] = server


def pytest_sessionfinish(session: pytest.Session) -> None:
    server = _early.pop("server", None)
    if server is not None:
        server.close()


@pytest.fixture(scope="session")
def durably_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurablyServer]:
    """A durable server for the whole session: free loopback ports, a temporary data
    directory; ``register(app)``, ``client()``, ``async_client()``, ``restart()``."""
    from durably.testing.server import DurablyServer

    server = _early.pop("server", None)
    if server is None:
        server = DurablyServer(tmp_path_factory.mktemp("durably"))
        server.launch()
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the server gets the tail of the server's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get(_FIXTURE)
    if report.failed and server is not None:
        report.sections.append(("durably server log", server.log_tail()))
