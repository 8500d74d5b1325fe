"""`durably serve --ui-read-only` (pages without any action; state-changing requests refused)
and `--no-ui` (no /ui/ at all), each against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.support.harness import DurablyServer, ServicesProcess, poll, register
from tests.ui.world import UI_APP


def test_read_only(tmp_path: Path) -> None:
    services = ServicesProcess([], tmp_path, app=UI_APP)
    server = DurablyServer(tmp_path / "server", extra_args=["--ui-read-only"])
    try:
        services.start()
        server.start()
        register(server.admin_url, services.url, use_http_11=True)
        with httpx.Client(timeout=30) as client:
            r = client.post(f"{server.ingress_url}/Waiter/wait/send", json="read-only")
            inv = r.json()["invocationId"]

            def suspended() -> None:
                status = client.get(f"{server.admin_url}/invocations/{inv}").json()["status"]
                assert status == "suspended"

            poll(suspended, timeout=20)
            ui = server.admin_url + "/ui/"
            html = client.get(ui + f"invocations/{inv}").text
            assert "read-only" in html
            assert 'name="action"' not in html and "<form method=\"post\"" not in html
            assert 'action="bulk"' not in client.get(ui + "invocations").text
            assert "Register a deployment" not in client.get(ui).text
            shop = client.get(ui + "services/Shop").text
            assert 'name="op" value="options"' not in shop and 'name="f:item"' not in shop
            assert "<dt>journal retention</dt><dd>1d</dd>" in shop
            same = {"sec-fetch-site": "same-origin"}
            for path, data in ((f"invocations/{inv}", {"action": "kill", "confirm": "yes"}),
                               ("bulk", {"action": "kill", "confirm": "yes"}),
                               ("state/Cart", {"key": "k", "entry": "a", "value": "1"}),
                               ("services/Greeter", {"handler": "greet", "body": "{}"}),
                               ("services/Shop", {"op": "options", "journal_retention": "1h",
                                                  "confirm": "yes"}),
                               ("deployments", {"uri": services.url})):
                r = client.post(ui + path, data=data, headers=same)
                assert r.status_code == 403, (path, r.status_code)
            status = client.get(f"{server.admin_url}/invocations/{inv}").json()["status"]
            assert status == "suspended"
            shop_options = client.get(f"{server.admin_url}/services/Shop").json()
            assert shop_options["journal_retention"] == "1d"
    finally:
        server.close()
        services.close()


def test_no_ui(tmp_path: Path) -> None:
    server = DurablyServer(tmp_path / "server", extra_args=["--no-ui"])
    try:
        server.start()
        with httpx.Client(timeout=30) as client:
            assert client.get(server.admin_url + "/ui/").status_code == 404
            assert client.get(server.admin_url + "/", follow_redirects=False).status_code == 404
            assert client.get(server.admin_url + "/health").status_code == 200
    finally:
        server.close()
