"""The pytest plugin (entry point ``pytest11``: ``durably``): the ``durably_server`` fixture.

Loaded into every pytest session once durably is installed, so it imports nothing heavy
until a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from durably.testing.server import DurablyServer


@pytest.fixture(scope="session")
def durably_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurablyServer]:
    """A durable server for the whole session: free loopback ports, a temporary data
    directory; ``register(app)``, ``client()``, ``async_client()``, ``restart()``."""
    from durably.testing.server import DurablyServer

    server = DurablyServer(tmp_path_factory.mktemp("durably"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the server gets the tail of the server's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("durably_server")
    if report.failed and server is not None:
        report.sections.append(("durably server log", server.log_tail()))
