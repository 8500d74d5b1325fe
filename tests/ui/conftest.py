"""The web UI's page tests: one real durably server with the UI test services, populated
with invocations in every status, shared by the module (tests/ui/world.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.ui.world import World, start_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = start_world(tmp_path_factory.mktemp("ui-world"))
    try:
        yield w
    finally:
        w.close()
