"""Screenshots of the web UI for docs/ui.md, beside the same views in Restate's UI.

    python -m tests.ui.screenshots            # durably's pages -> docs/ui/durably-*.png
    python -m tests.ui.screenshots --restate  # and Restate's   -> docs/ui/restate-*.png

Starts a real durably (and, with --restate, the real restate-server from the test cache)
with the UI test services (tests/ui/services.py), makes invocations in every status, and
drives Debian's Chromium with Playwright, as the browser tests do.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.harness import Env, RestateServer, ServicesProcess, poll, register
from tests.ui.world import SCRIPT, UI_APP, start_world
from tests.ui_browser.conftest import CHROMIUM_ARGS, chromium_path

OUT = Path(__file__).resolve().parents[2] / "docs" / "ui"


def _shoot(page: Any, url: str, name: str, *, full: bool = True, wait_ms: int = 300) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(wait_ms)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full, timeout=90_000,
                    animations="disabled")
    print("wrote", OUT / f"{name}.png", flush=True)


def durably_shots(browser: Any, base: Path) -> None:
    world = start_world(base / "durably")
    try:
        ui, ids = world.ui, world.ids
        light = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
        dark = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="dark")
        phone = browser.new_context(viewport={"width": 375, "height": 780}, is_mobile=True,
                                    device_scale_factor=2, color_scheme="light")
        p, d, m = light.new_page(), dark.new_page(), phone.new_page()
        _shoot(p, ui, "durably-overview")
        _shoot(d, ui, "durably-overview-dark")
        _shoot(p, ui + "invocations", "durably-invocations")
        p.goto(ui + "invocations?status=backing-off&status=paused&status=failed")
        _shoot(p, ui + "invocations?status=suspended&status=pending&column=id&column=target"
               "&column=status&column=created_at&column=journal_size&column=invoked_by_id",
               "durably-invocations-filtered")
        _shoot(p, ui + f"invocations/{ids['succeeded']}", "durably-invocation")
        _shoot(d, ui + f"invocations/{ids['deadlock']}", "durably-invocation-deadlock-dark")
        _shoot(p, ui + f"invocations/{ids['backing-off']}", "durably-invocation-failing")
        _shoot(p, ui + "state/Cart?key=alice", "durably-state")
        _shoot(p, ui + "services/Greeter", "durably-playground")
        _shoot(p, ui + f"invocations/{ids['shop']}", "durably-invocation-timeline")
        _shoot(d, ui + f"invocations/{ids['backing-off']}", "durably-invocation-failing-dark")
        # the schema form of Shop/order, and the service's options
        p.goto(ui + "services/Shop")
        p.locator("details.panel").filter(
            has=p.locator('input[name="handler"][value="order"]')).locator("summary").first.click()
        p.get_by_label("item").fill("tea")
        p.get_by_label("quantity").fill("2")
        p.wait_for_timeout(300)
        p.screenshot(path=str(OUT / "durably-playground-form.png"), full_page=True)
        print("wrote", OUT / "durably-playground-form.png", flush=True)
        p.goto(ui + "services/Shop")
        p.get_by_label("journal retention").fill("7d")
        p.get_by_label("abort timeout").fill("15m")
        p.get_by_role("button", name="Save options…").click()
        p.wait_for_load_state("load")
        p.screenshot(path=str(OUT / "durably-service-options-confirm.png"), full_page=False)
        print("wrote", OUT / "durably-service-options-confirm.png", flush=True)
        _shoot(p, ui + "sql?query=SELECT+status%2C+count(*)+AS+n+FROM+sys_invocation+GROUP+BY"
               "+status+ORDER+BY+n+DESC", "durably-sql")
        # a bulk dry run: select the suspended Waiter invocations, ask for Kill
        p.goto(ui + "invocations?status=suspended&service=Waiter")
        p.locator("#select-all").check()
        p.get_by_label("Bulk action").select_option("kill")
        p.get_by_role("button", name="On selected").click()
        p.wait_for_load_state("networkidle")
        p.screenshot(path=str(OUT / "durably-bulk-dry-run.png"), full_page=True)
        print("wrote", OUT / "durably-bulk-dry-run.png", flush=True)
        _shoot(m, ui + "invocations", "durably-invocations-375px", full=False)
        _shoot(m, ui + f"invocations/{ids['succeeded']}", "durably-invocation-375px",
               full=False)
        _shoot(m, ui + f"invocations/{ids['shop']}", "durably-invocation-timeline-375px",
               full=True)
        for c in (light, dark, phone):
            c.close()
    finally:
        world.close()


def restate_shots(browser: Any, base: Path) -> None:
    services = ServicesProcess([], base / "restate", app=UI_APP,
                               env={"UI_TEST_DIR": str(base / "restate")})
    server = RestateServer(base / "restate" / "server")
    env = Env(server, services, "http1")
    try:
        services.start()
        server.start()
        register(server.admin_url, services.url, use_http_11=True)
        env.call("Greeter", "greet", {"name": SCRIPT}, idem=False, headers={"x-note": "hi"})
        env.call("Cart", "add", "apple", key="alice", idem=False)
        for service, handler, body in (("Waiter", "wait", "s"), ("Flaky", "fail", "flaky"),
                                       ("Boom", "fail", "terminal"), ("Slow", "hold", "r")):
            env.send(service, handler, body, idem=False)
        env.send("Cart", "call", ["b", "a"], key="a", idem=False)
        time.sleep(3)
        env.call("Shop", "order", {"item": "tea", "quantity": 2}, idem=False)
        greet = env.query("SELECT id FROM sys_invocation WHERE target = 'Greeter/greet'")
        shop = env.query("SELECT id FROM sys_invocation WHERE target = 'Shop/order'")
        flaky = env.query("SELECT id FROM sys_invocation WHERE target = 'Flaky/fail'")
        ui = server.admin_url + "/ui/"
        ctx = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
        p = ctx.new_page()
        wait = 12_000  # a single-page app: let its queries finish (slow on a loaded machine)
        _shoot(p, ui + "overview", "restate-overview", wait_ms=wait, full=False)
        _shoot(p, ui + "invocations", "restate-invocations", wait_ms=wait, full=False)
        _shoot(p, ui + f"invocations/{greet[0]['id']}", "restate-invocation", wait_ms=wait, full=False)
        _shoot(p, ui + f"invocations/{flaky[0]['id']}", "restate-invocation-failing",
               wait_ms=wait, full=False)
        _shoot(p, ui + f"invocations/{shop[0]['id']}", "restate-invocation-timeline",
               wait_ms=wait, full=False)
        # its service panel (options) and its playground, as its overview links them
        _shoot(p, ui + "overview?service=Shop&panel=service&handler=",
               "restate-service-options", wait_ms=wait, full=False)
        _shoot(p, ui + "overview?servicePlayground=Shop#/operations/order",
               "restate-playground", wait_ms=wait, full=False)
        _shoot(p, ui + "state/Cart", "restate-state", wait_ms=wait, full=False)
        _shoot(p, ui + "introspection", "restate-sql", wait_ms=wait, full=False)
        ctx.close()

        def released() -> None:
            (base / "restate" / "release-r").touch()

        poll(released, timeout=5)
    finally:
        env.close()
        server.close()
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restate", action="store_true", help="also Restate's UI")
    parser.add_argument("--only-restate", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("no Chromium (apt-get install chromium, or set DURABLY_CHROMIUM)")
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="durably-ui-shots-"))
    os.environ.setdefault("DURABLY_TEST_TARGET", "durably")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            if not args.only_restate:
                durably_shots(browser, base)
            if args.restate or args.only_restate:
                restate_shots(browser, base)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
