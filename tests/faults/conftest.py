"""Fixtures of the fault tests: a server under test plus the fault services
(``tests.faults.services``), started fresh for each test so that kills do not leak."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from tests.support.harness import Env, ServicesProcess, make_server, register, start_together

FAULT_APP = "tests.faults.services:app"

MakeEnv = Callable[..., Env]


@pytest.fixture
def fault_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeEnv]:
    """A factory: ``fault_env(mode="h2", services_env={...}, server_options={...})``;
    ``app`` serves other services, ``server_args`` adds ``durably serve`` flags."""
    made: list[Env] = []
    request.node.fault_envs = made  # for the failure report below

    def make(
        mode: str = "h2",
        services_env: Mapping[str, str] | None = None,
        server_options: Mapping[str, str] | None = None,
        app: str = FAULT_APP,
        server_args: Sequence[str] = (),
        via: Callable[[ServicesProcess], str] | None = None,
    ) -> Env:
        base = tmp_path / f"env{len(made)}"
        services = ServicesProcess([], base, env=services_env, app=app)
        server = make_server(base / "server", server_options)
        if server_args:
            server.extra_args = [*getattr(server, "extra_args", []), *server_args]
        env = Env(server, services, mode)
        made.append(env)
        start_together(services, server)
        # ``via``: the URL of something in front of the services (a fault proxy) to register
        url = via(services) if via is not None else services.url
        register(server.admin_url, url, use_http_11=(mode == "http1"))
        return env

    yield make
    for env in made:
        env.close()
        env.server.close()
        env.services.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the process logs of the fault environments to a failed test."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when == "call":
        for e in getattr(item, "fault_envs", []):
            rep.sections.append(("fault test process logs", e.logs()))
