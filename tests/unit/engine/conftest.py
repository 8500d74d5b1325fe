"""Fixtures for the engine tests: an engine on a temp data dir, with no sockets anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _engine_harness import Harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    """Engine negotiating protocol V6 (the default)."""
    harness = Harness(tmp_path / "data")
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
async def h7(tmp_path: Path) -> AsyncIterator[Harness]:
    """Engine with `--enable-protocol-v7`: bidi deployments negotiate V7."""
    harness = Harness(tmp_path / "data", enable_protocol_v7=True)
    try:
        yield harness
    finally:
        harness.close()
