"""The web UI in Chromium: filters and their URLs, the journal and request headers, actions
offered and acted on (checked through the admin API), live updates without a reload, bulk
progress, themes, a 375 px screen, the keyboard, pages without JavaScript, and axe-core with
no violations on every page in both themes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.support.harness import poll
from tests.ui.world import World

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def _pages(world: World) -> list[str]:
    ids = world.ids
    return [
        "", "invocations", "invocations?status=suspended&column=id&column=status&column=target",
        f"invocations/{ids['succeeded']}", f"invocations/{ids['deadlock']}",
        f"invocations/{ids['backing-off']}", f"invocations/{ids['to-kill']}",
        f"invocations/{ids['workflow']}", "state", "state/Cart", "state/Cart?key=alice",
        "state/Signup?key=ada", "services/Greeter", "services/Cart", "services/Shop",
        "services/Signup", f"invocations/{ids['shop']}", f"invocations/{ids['running']}",
        "sql?query=SELECT+id%2C+status+FROM+sys_invocation+LIMIT+5", "sql?query=SELEC",
        "nope",
    ]


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    context.close()


def _open_playground(page: Any, world: World, service: str, handler: str) -> Any:
    page.goto(world.ui + f"services/{service}")
    panel = page.locator("details.panel").filter(
        has=page.locator(f'input[name="handler"][value="{handler}"]'))
    panel.locator("summary").first.click()
    return panel


def _axe(page: Any, axe_source: str) -> list[str]:
    """axe-core's violations on the page as it is now (folded <details> opened first)."""
    for details in page.locator("details").all():  # check what is folded away too
        details.evaluate("d => d.open = true")
    page.evaluate(axe_source)
    violations: list[str] = page.evaluate(
        """async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))
            .violations.map(v => v.id + ': ' + v.help + ' @ ' +
                            v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))""",
        AXE_TAGS)
    return violations


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violations(browser: Any, world: World, axe_source: str,
                                 scheme: str) -> None:
    # bypass_csp: the page's CSP (rightly) refuses the injected axe script
    context = browser.new_context(color_scheme=scheme, bypass_csp=True,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    found: dict[str, list[str]] = {}
    try:
        for path in _pages(world):
            page.goto(world.ui + path)
            violations = _axe(page, axe_source)
            if violations:
                found[path] = violations
        # pages that only a POST shows: the options' confirmation, a refused playground call
        page.goto(world.ui + "services/Shop")
        page.get_by_label("abort timeout").fill("11m")
        page.get_by_role("button", name="Save options…").click()
        page.get_by_role("heading", name="Change the options of Shop?").wait_for()
        found["options confirmation"] = _axe(page, axe_source)
        panel = _open_playground(page, world, "Shop", "order")
        panel.get_by_label("item").fill("x")
        panel.get_by_label("quantity").fill("99")  # past the schema's maximum
        panel.get_by_text("Raw JSON instead").click()
        panel.get_by_role("button", name="Call with this JSON").click()  # no browser check
        page.get_by_role("alert").wait_for()
        found["refused playground call"] = _axe(page, axe_source)
        found = {k: v for k, v in found.items() if v}
    finally:
        context.close()
    assert not found, found


def test_filters_narrow_the_list_and_the_url_reproduces_it(page: Any, world: World) -> None:
    page.goto(world.ui + "invocations")
    page.get_by_role("link", name="suspended", exact=True).first.click()
    page.wait_for_url(re.compile(r"status=suspended"))
    statuses = page.locator("#rows tbody .status").all_inner_texts()
    assert statuses and set(statuses) == {"suspended"}
    # narrow further with the form: service Waiter
    page.get_by_text("Filters, sort and columns").click()
    page.get_by_label("Service").fill("Waiter")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"service=Waiter"))
    rows = page.locator("#rows tbody tr").count()
    url = page.url
    assert world.ids["suspended"] in page.content()
    count = page.locator("#count").inner_text()
    other = page.context.new_page()
    other.goto(url)
    assert other.locator("#rows tbody tr").count() == rows
    assert other.locator("#count").inner_text() == count
    other.close()


def test_detail_shows_journal_and_request_headers(page: Any, world: World) -> None:
    page.goto(world.ui + f"invocations/{world.ids['succeeded']}")
    request = page.get_by_role("table", name="Request headers")
    assert request.get_by_role("cell", name="x-request-source").is_visible()
    assert request.get_by_role("cell", name="<b>bold</b>").is_visible()  # shown as text
    timeline = page.locator(".timeline")
    for kind in ("Input", "Run", "Output"):
        assert timeline.get_by_text(kind, exact=True).first.is_visible()
    raw = page.locator("#entry-0 details", has_text="entry as JSON")
    raw.locator("summary").click()
    assert '"Input"' in raw.locator("pre").inner_text()
    # the failure banner jumps to the journal
    page.goto(world.ui + f"invocations/{world.ids['backing-off']}")
    page.locator(".note.bad a[href^='#entry-']").click()
    assert re.search(r"#entry-\d+$", page.url)


def test_action_buttons_act(page: Any, world: World) -> None:
    inv = world.send("Waiter", "wait", "killed in the browser")
    world.wait_status(inv, "suspended")
    page.goto(world.ui + f"invocations/{inv}")
    buttons = page.locator(".actions button").all_inner_texts()
    assert buttons == ["Cancel", "Kill"]
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Kill").click()
    page.wait_for_url(re.compile(r"message="))
    assert "Kill: done" in page.locator("[role=status]").first.inner_text()
    assert world.status(inv) == "killed"
    assert page.locator(".actions button").all_inner_texts() == ["Restart as new", "Purge"]
    # declining the dialog changes nothing
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Purge").click()
    assert world.status(inv) == "killed"


def test_live_update_without_reload(page: Any, world: World) -> None:
    inv = world.send("Slow", "hold", "live")
    world.wait_status(inv, "running")
    page.goto(world.ui + f"invocations/{inv}")
    assert page.locator("h1 .status").inner_text() == "running"
    page.evaluate("window.__same_document = true")
    world.release("live")
    # (expect polls without eval, which the page's CSP forbids)
    expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=30_000)
    assert page.evaluate("window.__same_document") is True  # no reload happened
    assert page.locator("#live-region").get_attribute("data-live") == "off"


def test_bulk_with_progress(page: Any, world: World) -> None:
    made = [world.send("Waiter", "wait", f"browser bulk {i}") for i in range(3)]
    for inv in made:
        world.wait_status(inv, "suspended")
    page.goto(world.ui + "invocations?status=suspended&service=Waiter&limit=200")
    for inv in made:
        page.get_by_label(f"Select {inv}").check()
    page.get_by_label("Bulk action").select_option("kill")
    page.get_by_role("button", name="On selected").click()
    assert "3 invocations are selected" in page.locator("#dry-run").inner_text()
    assert all(world.status(i) == "suspended" for i in made)
    page.get_by_role("button", name="Kill 3").click()
    expect(page.locator("#bulk-progress p")).to_have_text(re.compile(r"^Done"))
    assert page.locator("#bulk-progress progress").get_attribute("value") == "3"
    for inv in made:
        assert world.status(inv) == "killed"


def test_theme_toggle_and_dark_default(browser: Any, world: World) -> None:
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(world.ui)
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 17, 23)"
        page.get_by_role("button", name="Switch between light and dark theme").click()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == \
            "rgb(255, 255, 255)"
        page.reload()  # remembered
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
    finally:
        context.close()


def test_narrow_screen(browser: Any, world: World) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
    page = context.new_page()
    try:
        for path in _pages(world):
            page.goto(world.ui + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
    finally:
        context.close()


def test_keyboard_only(page: Any, world: World) -> None:
    page.goto(world.ui)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(world.ui)
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Invocations":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/invocations"))
    # a row's link is reachable and opens the invocation
    page.locator("#rows tbody a").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/invocations/inv_"))


def test_works_without_javascript(browser: Any, world: World) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        inv = world.send("Waiter", "wait", "killed without script")
        world.wait_status(inv, "suspended")
        page.goto(world.ui + f"invocations/{inv}")
        page.get_by_role("button", name="Kill").click()
        # the server asks instead of the script's dialog
        page.get_by_role("heading", name=re.compile("Kill")).wait_for()
        assert world.status(inv) == "suspended"
        page.get_by_role("button", name="Kill").click()
        page.wait_for_url(re.compile(r"message="))

        def killed() -> None:
            assert world.status(inv) == "killed"

        poll(killed, timeout=10)
    finally:
        context.close()


def test_service_options_edited_with_a_confirmation(page: Any, world: World) -> None:
    admin = f"{world.env.admin}/services/Shop"
    before = world.env.client.get(admin).json()["idempotency_retention"]
    page.goto(world.ui + "services/Shop")
    field = page.get_by_label("idempotency retention")
    field.fill("3h")
    field.press("Enter")  # submits, from the keyboard
    page.get_by_role("heading", name="Change the options of Shop?").wait_for()
    assert f"idempotency retention: {before} → 3h" in page.locator("main").inner_text()
    assert world.env.client.get(admin).json()["idempotency_retention"] == before
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved. idempotency retention: 3h.")
    assert world.env.client.get(admin).json()["idempotency_retention"] == "3h"
    assert page.get_by_label("idempotency retention").input_value() == "3h"
    # a value the API refuses is refused before the confirmation, in the API's words
    page.get_by_label("abort timeout").fill("later")
    page.get_by_role("button", name="Save options…").click()
    expect(page.get_by_role("alert")).to_contain_text("abort_timeout: failed to parse")
    world.env.client.patch(admin, json={"idempotency_retention": before})


def test_playground_form_checks_then_calls(page: Any, world: World) -> None:
    panel = _open_playground(page, world, "Shop", "order")
    raw = panel.locator("textarea[name=body]")
    panel.get_by_label("item").fill("scone")
    panel.get_by_label("quantity").fill("4")
    panel.get_by_label("size").select_option("S")
    # the raw JSON follows the fields as they are typed
    assert '"item": "scone"' in raw.input_value() and '"quantity": 4' in raw.input_value()
    # the browser refuses what the schema refuses, before any request
    panel.get_by_label("quantity").fill("11")
    panel.get_by_role("button", name="Call", exact=True).click()
    assert panel.get_by_label("quantity").evaluate("e => e.validity.rangeOverflow") is True
    assert page.get_by_role("status").count() == 0
    panel.get_by_label("quantity").fill("4")
    panel.get_by_role("button", name="Call", exact=True).click()
    result = page.locator(".result")
    expect(result).to_contain_text("HTTP 200")
    assert '"total": 12' in result.inner_text() and '"size": "S"' in result.inner_text()
    # raw JSON that is not JSON is stopped by the script
    panel = _open_playground(page, world, "Shop", "order")
    panel.get_by_text("Raw JSON instead").click()
    panel.locator("textarea[name=body]").fill("{not json")
    url = page.url
    panel.get_by_role("button", name="Call with this JSON").click()
    assert panel.locator("textarea[name=body]").evaluate("e => e.validationMessage").startswith(
        "Not JSON")
    assert page.url == url and page.locator(".result").count() == 0


def test_timeline_and_relative_times(page: Any, world: World) -> None:
    page.goto(world.ui + f"invocations/{world.ids['shop']}")
    rows = page.locator(".tl .tl-row:not(.tl-axis)")
    labels = rows.locator(".tl-label").all_inner_texts()
    assert labels[0] == "invocation" and any(t.endswith("Sleep") for t in labels)
    # a bar's label is a link to its journal entry
    page.locator(".tl-label a", has_text="Run").first.click()
    assert re.search(r"#entry-\d+$", page.url)
    # times are relative, the absolute time in the tooltip, and the script keeps them fresh
    created = page.locator("dd time").first
    assert re.fullmatch(r"just now|\d+ (s|min|h) ago", created.inner_text())
    assert created.get_attribute("title") == created.get_attribute("datetime")
    created.evaluate("t => t.setAttribute('datetime', new Date(Date.now() - 7000).toISOString())")
    expect(created).to_have_text(re.compile(r"^(7|8|9) s ago$"))


def test_new_views_without_javascript(browser: Any, world: World) -> None:
    """The options form, the playground's schema form and relative times need no script."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    admin = f"{world.env.admin}/services/Shop"
    before = world.env.client.get(admin).json()["journal_retention"]
    try:
        page.goto(world.ui + "services/Shop")
        page.get_by_label("journal retention").fill("5h")
        page.get_by_role("button", name="Save options…").click()
        page.get_by_role("heading", name="Change the options of Shop?").wait_for()
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("journal retention: 5h")
        assert world.env.client.get(admin).json()["journal_retention"] == "5h"
        panel = _open_playground(page, world, "Shop", "order")
        panel.get_by_label("item").fill("muffin")
        panel.get_by_role("button", name="Call", exact=True).click()
        expect(page.locator(".result")).to_contain_text('"item": "muffin"')
        page.goto(world.ui + f"invocations/{world.ids['shop']}")
        assert re.fullmatch(r"\d+ (s|min) ago", page.locator("dd time").first.inner_text())
        assert page.locator(".tl .tl-row").count() >= 4
    finally:
        context.close()
        world.env.client.patch(admin, json={"journal_retention": before})
