"""StopRuntime: stop the server gracefully (SIGTERM), start it again on the same data dir."""

from __future__ import annotations

import pytest
from tests.conformance._runtime_restart import restart_retains_state
from tests.support.harness import Env

SERVICES = ["Counter"]

pytestmark = pytest.mark.restart


@pytest.mark.timeout(120)
def test_start_and_stop_runtime_retains_the_state(env: Env) -> None:
    restart_retains_state(env, graceful=True)
