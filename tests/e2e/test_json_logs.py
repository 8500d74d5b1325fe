"""`durably serve --log-format json`: one JSON object per log line, and the invocation id
as a field on the lines about an invocation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.support.harness import DurablyServer, Env, ServicesProcess, poll, register


@pytest.mark.skipif(os.environ.get("DURABLY_TEST_TARGET", "durably") != "durably",
                    reason="durably's own logs")
def test_json_logs_carry_the_invocation_id(tmp_path: Path) -> None:
    services = ServicesProcess(["OpsTestService"], tmp_path)
    server = DurablyServer(tmp_path / "server", extra_args=["--log-format", "json",
                                                            "--log-level", "info"])
    try:
        services.start()
        server.start()
        register(server.admin_url, services.url, use_http_11=False)
        env = Env(server, services, "h2")
        inv_id, _ = env.send("OpsTestService", "alwaysFails", "logs")

        def logged() -> list[dict]:
            lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
                     if line.startswith("{")]
            about = [d for d in lines if d.get("invocation_id") == inv_id]
            assert any("attempt failed" in d["message"] for d in about)
            return lines

        lines = poll(logged, timeout=30)
        env.kill(inv_id)
        for d in lines:
            assert {"ts", "level", "logger", "message"} <= set(d)
        env.close()
    finally:
        server.close()
        services.close()
