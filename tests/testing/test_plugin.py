"""durably.testing: the pytest plugin's entry point and the DurablyServer's promises."""

from __future__ import annotations

import importlib.metadata
import threading

import httpx
import restate
from restate import Context

from durably.testing import DurablyServer

svc = restate.Service("PluginProbe")
gate = threading.Event()


@svc.handler()
async def echo(ctx: Context, text: str) -> str:
    return text


@svc.handler()
async def wait_for_gate(ctx: Context, text: str) -> str:
    # in the test process: the handler's side effect can be seen by the test
    await ctx.run_typed("wait", gate.wait, timeout=60)
    return text


app = restate.app([svc])


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    eps = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.name == "durably" and ep.value == "durably.testing.plugin" for ep in eps), (
        "durably.testing.plugin is not installed as a pytest11 entry point "
        "(pip install -e . in this checkout)"
    )


def test_register_is_idempotent_and_apps_outlive_a_restart() -> None:
    with DurablyServer() as server:
        first = server.register(app)
        assert server.register(app) == first
        url = server.apps.url_of(app)
        assert url is not None
        with httpx.Client() as http:
            deployments = http.get(f"{server.admin_url}/deployments").json()["deployments"]
        assert [d["id"] for d in deployments] == [first]

        with server.client() as client:
            handle = client.service("PluginProbe").send("wait_for_gate", "kept")
            server.restart()  # the attempt dies with the server; the app keeps serving
            gate.set()
            assert client.invocation(handle.invocation_id).attach(output=str) == "kept"
            assert client.service("PluginProbe").call("echo", "after", output=str) == "after"
        assert server.apps.url_of(app) == url
    assert not server.data_dir.exists()  # a temporary directory is removed by close()


def test_docs_show_the_example_files_as_they_are() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "testing.md").read_text()
    for name in ("shop.py", "test_shop.py"):
        text = (root / "docs" / "examples" / "testing" / name).read_text()
        assert f"```python\n{text}```" in doc, f"docs/testing.md shows an old {name}"
