"""Web UI pages without a browser, against a real durably server: status codes, escaping,
security headers, the same-origin check, filters and their URLs, actions offered exactly
when they apply (and acting through them), bulk dry runs, state editing, the playground and
the SQL console."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
import pytest
from starlette.datastructures import QueryParams
from tests.support.harness import poll
from tests.ui.world import SCRIPT, World

from durably.ui.filters import ListView

# What each display status offers, as Restate's UI offers it (docs: reference/ui.md, from
# restate-web-ui's Actions.tsx). Written out here, not derived from the code under test.
EXPECTED_ACTIONS = {
    "running": {"pause", "cancel", "kill"},
    "suspended": {"cancel", "kill"},
    "backing-off": {"retry-now", "pause", "cancel", "kill"},
    "paused": {"resume", "cancel", "kill"},
    "pending": {"cancel", "kill"},
    "scheduled": {"cancel", "kill"},
    "succeeded": {"restart-as-new", "purge"},
    "failed": {"restart-as-new", "purge"},
    "cancelled": {"restart-as-new", "purge"},
    "killed": {"restart-as-new", "purge"},
}
WORLD_STATUS = {  # world id name -> display status
    "running": "running", "suspended": "suspended", "backing-off": "backing-off",
    "paused": "paused", "pending": "pending", "scheduled": "scheduled",
    "succeeded": "succeeded", "failed": "failed", "to-cancel": "cancelled", "to-kill": "killed",
}


def get(world: World, path: str, **kw: object) -> httpx.Response:
    return world.env.client.get(world.ui + path, **kw)  # type: ignore[arg-type]


def post(world: World, path: str, data: dict[str, object], **kw: object) -> httpx.Response:
    return world.env.client.post(world.ui + path, data=data, **kw)  # type: ignore[arg-type]


def offered(html: str) -> set[str]:
    """The actions a detail page offers (its action forms' hidden `action` fields)."""
    block = re.search(r'<div class="actions row".*?</div>', html, re.S)
    if block is None:
        return set()
    return set(re.findall(r'name="action" value="([a-z-]+)"', block.group(0)))


def test_root_and_ui_redirect_relatively(world: World) -> None:
    for path in ("/", "/ui"):
        r = world.env.client.get(world.env.admin + path, follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "ui/", (path, r.headers)


@pytest.mark.parametrize("path", [
    "", "invocations", "invocations?status=running", "state", "state/Cart",
    "state/Cart?key=alice", "state/Signup?key=ada", "services/Greeter", "services/Cart",
    "services/Shop", "services/Signup", "sql", "sql?query=SELECT+1", "static/ui.css", "static/ui.js",
])
def test_pages_answer(world: World, path: str) -> None:
    r = get(world, path)
    assert r.status_code == 200, r.text[:500]
    if path.startswith("static/"):
        return
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    # every link and form target is relative: the UI works under a path prefix
    for url in re.findall(r'(?:href|src|action)="([^"]*)"', r.text):
        assert not url.startswith(("/", "http:", "https:")), url


@pytest.mark.parametrize("path,status", [
    ("nope", 404), ("invocations/inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 404),
    ("services/Nope", 404), ("state/Nope", 404), ("journal/inv_1nope", 404),
    ("invocations?status=bogus", 400), ("invocations?where=nonsense+%3D%3D", 400),
])
def test_error_pages(world: World, path: str, status: int) -> None:
    r = get(world, path)
    assert r.status_code == status, r.text[:300]
    assert "text/html" in r.headers["content-type"]


def test_every_status_is_listed_and_counted(world: World) -> None:
    # (polled: the backing-off invocation is "running" for the moment of each retry)
    def listed() -> None:
        html = get(world, "").text
        for status in WORLD_STATUS.values():
            assert re.search(rf'href="invocations\?status={status}">{status} <b>[1-9]', html), status
        for name, status in WORLD_STATUS.items():
            r = get(world, f"invocations?status={status}")
            assert world.ids[name] in r.text, (name, status)

    poll(listed, timeout=20)


def test_script_payload_comes_back_escaped(world: World) -> None:
    pages = [get(world, f"invocations/{world.ids['succeeded']}").text,
             get(world, "state/Cart?key=alice").text]
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html
    detail = pages[0]
    assert "&lt;b&gt;bold&lt;/b&gt;" in detail and "<b>bold</b>" not in detail
    assert "x-request-source" in detail  # the request's headers are shown
    r = get(world, f"invocations?where=target_service_name+%3D+%27{SCRIPT}%27")
    assert "<script>alert" not in r.text


def test_detail_shows_journal_request_output_and_tree(world: World) -> None:
    html = get(world, f"invocations/{world.ids['succeeded']}").text
    for part in ("Command: <b>Input</b>", "Command: <b>Run</b>", "Command: <b>Output</b>",
                 "Hello &lt;script&gt;", "lookup", "Download as JSON"):
        assert part in html, part
    deadlock = get(world, f"invocations/{world.ids['deadlock']}").text
    assert "Deadlock" in deadlock and world.ids["deadlock-b"] in deadlock
    assert world.ids["pending"] in deadlock  # every member of the cycle is linked
    child = get(world, f"invocations/{world.ids['deadlock-b']}").text
    assert f'href="{world.ids["deadlock"]}"' in child  # its parent
    failed = get(world, f"invocations/{world.ids['backing-off']}").text
    assert "Last failure" in failed and "flaky failure" in failed
    # linked to the journal entry of the run that failed, with the SDK's stack trace
    assert re.search(r'It failed at <a href="#entry-(\d+)">', failed), failed
    assert "stack trace" in failed and "Traceback" in failed


def test_journal_download(world: World) -> None:
    r = get(world, f"journal/{world.ids['succeeded']}")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    doc = r.json()
    assert doc["invocation"]["id"] == world.ids["succeeded"]
    assert [e["index"] for e in doc["journal"]] == list(range(len(doc["journal"])))
    assert "Input" in doc["journal"][0]["entry_json"]["Command"]


@pytest.mark.parametrize("name", list(WORLD_STATUS))
def test_actions_offered_exactly_when_they_apply(world: World, name: str) -> None:
    def check() -> None:
        html = get(world, f"invocations/{world.ids[name]}").text
        assert offered(html) == EXPECTED_ACTIONS[WORLD_STATUS[name]], name

    poll(check, timeout=20)  # (a retry makes the backing-off one "running" for a moment)


def test_cross_site_post_is_refused(world: World) -> None:
    target = world.ids["suspended"]
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "null"}):
        r = post(world, f"invocations/{target}", {"action": "kill", "confirm": "yes"},
                 headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
        r = post(world, "bulk", {"action": "kill", "confirm": "yes", "filter": ""},
                 headers=headers)
        assert r.status_code == 403
    assert world.status(target) == "suspended"


def test_action_asks_first_then_acts(world: World) -> None:
    inv = world.send("Waiter", "wait", "to be killed from the UI")
    world.wait_status(inv, "suspended")
    same = {"origin": world.env.admin}
    r = post(world, f"invocations/{inv}", {"action": "kill"}, headers=same)
    assert r.status_code == 200 and 'name="confirm" value="yes"' in r.text
    assert world.status(inv) == "suspended"
    r = post(world, f"invocations/{inv}", {"action": "kill", "confirm": "yes"}, headers=same,
             follow_redirects=True)
    assert r.status_code == 200 and "Kill: done" in r.text
    assert world.status(inv) == "killed"  # through the admin API
    r = post(world, f"invocations/{inv}", {"action": "kill", "confirm": "yes"}, headers=same,
             follow_redirects=True)
    assert "Kill refused (409)" in r.text  # the admin API's own answer, shown


def test_pause_resume_restart_purge(world: World) -> None:
    same = {"sec-fetch-site": "same-origin"}
    inv = world.send("Flaky", "fail", "cycle through actions")
    world.wait_status(inv, "backing-off")

    def act(inv_id: str, action: str, **extra: str) -> httpx.Response:
        return post(world, f"invocations/{inv_id}", {"action": action, "confirm": "yes",
                                                     **extra}, headers=same)

    assert act(inv, "pause").status_code == 303
    world.wait_status(inv, "paused")
    assert act(inv, "resume").status_code == 303
    world.wait_status(inv, "backing-off", "running")
    assert act(inv, "kill").status_code == 303
    world.wait_status(inv, "killed")
    r = act(inv, "restart-as-new")
    assert r.status_code == 303
    new_id = r.headers["location"].split("?")[0]
    assert new_id.startswith("inv_") and new_id != inv
    world.wait_status(new_id, "backing-off", "running")
    assert act(new_id, "kill").status_code == 303
    assert act(inv, "purge").status_code == 303
    assert world.status(inv) == "purged"


def test_filters_narrow_and_urls_round_trip(world: World) -> None:
    qs = urlencode([("status", "suspended"), ("status", "paused"), ("service", "Waiter"),
                    ("where", "journal_size >= 1"), ("order", "asc"), ("column", "id"),
                    ("column", "status"), ("limit", "20")])
    view = ListView.from_query(QueryParams(qs))
    assert view.query_string() == qs
    html = get(world, f"invocations?{qs}").text
    assert world.ids["suspended"] in html and world.ids["paused"] not in html
    assert world.ids["succeeded"] not in html
    assert f'href="invocations?{qs.replace("&", "&amp;")}"' in html  # the shareable link
    r = get(world, "invocations?status=running&status=suspended&service=Waiter")
    assert re.search(r"<b>\d+</b> invocations? match", r.text)


def test_last_filter_is_remembered(world: World) -> None:
    client = httpx.Client()
    try:
        client.get(world.ui + "invocations?status=paused")
        r = client.get(world.ui + "invocations?last=1", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "invocations?status=paused"
    finally:
        client.close()


def test_keyset_paging_and_exact_count(world: World) -> None:
    for i in range(25):
        world.env.call("Greeter", "greet", {"name": f"p{i}"}, idem=False)
    seen: list[str] = []
    url = "invocations?service=Greeter&status=succeeded&limit=20&column=id"
    total = None
    while url:
        html = get(world, url).text
        total = int(re.search(r"<b>([\d,]+)</b> invocations? match", html).group(1))
        seen += re.findall(r'href="invocations/(inv_\w+)"', html)
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert total is not None and total >= 26
    assert len(seen) == total and len(set(seen)) == total
    # and back: the previous page of page two is page one
    first = get(world, "invocations?service=Greeter&status=succeeded&limit=20&column=id").text
    second_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = get(world, second_url).text
    prev_url = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    again = get(world, prev_url).text
    ids = lambda html: re.findall(r'href="invocations/(inv_\w+)"', html)  # noqa: E731
    assert ids(again) == ids(first)


def test_bulk_dry_run_then_run(world: World) -> None:
    same = {"sec-fetch-site": "same-origin"}
    made = [world.send("Waiter", "wait", f"bulk {i}") for i in range(3)]
    for inv in made:
        world.wait_status(inv, "suspended")
    filter_qs = "where=" + " OR ".join(f"id = '{i}'" for i in made)
    r = post(world, "bulk", {"action": "kill", "filter": filter_qs, "scope": "all"},
             headers=same)
    assert r.status_code == 200 and "<b>3</b> invocations are matching" in r.text
    assert all(world.status(i) == "suspended" for i in made)  # a dry run changes nothing
    r = post(world, "bulk", {"action": "kill", "filter": filter_qs, "confirm": "yes"},
             headers={**same, "accept": "application/json"})
    step = r.json()
    assert step["done"] == 3 and step["finished"] is True
    assert all(world.status(i) == "killed" for i in made)
    r = post(world, "bulk", {"action": "kill", "scope": "selected", "filter": ""}, headers=same)
    assert r.status_code == 400  # "on selected" with nothing selected acts on nothing


def test_state_page_and_edit(world: World) -> None:
    same = {"sec-fetch-site": "same-origin"}
    html = get(world, "state/Cart?key=alice").text
    assert "items" in html and "apple" in html
    r = post(world, "state/Cart", {"key": "alice", "entry": "note", "value": '{"a": 1}',
                                   "as_json": "on"}, headers=same, follow_redirects=True)
    assert "Saved" in r.text
    rows = world.env.query("SELECT key, value_utf8 FROM state WHERE service_name = 'Cart' "
                           "AND service_key = 'alice' ORDER BY key")
    assert {r["key"]: r["value_utf8"] for r in rows}["note"] == '{"a": 1}'
    assert {"items", "last", "note"} == {r["key"] for r in rows}
    r = post(world, "state/Cart", {"key": "alice", "entry": "note", "value": "{bad",
                                   "as_json": "on"}, headers=same, follow_redirects=True)
    assert "not JSON" in r.text
    r = post(world, "state/Cart", {"key": "alice", "entry": "note", "op": "delete"},
             headers=same, follow_redirects=True)
    assert "Removed" in r.text
    assert world.env.call_json("Cart", "items", key="alice") == ["apple", SCRIPT]
    # a key an invocation holds is refused (the deadlocked `a` holds its lock)
    r = post(world, "state/Cart", {"key": "a", "entry": "x", "value": "1", "as_json": "on"},
             headers=same, follow_redirects=True)
    assert "held by a running invocation" in r.text
    wf = get(world, "state/Signup?key=ada").text
    assert "ada@example.com" in wf and "Promises" in wf


def test_playground_calls_a_handler(world: World) -> None:
    same = {"sec-fetch-site": "same-origin"}
    html = get(world, "services/Greeter").text
    assert "Playground" in html and 'name="handler" value="greet"' in html
    r = post(world, "services/Greeter", {"handler": "greet", "body": '{"name": "play"}',
                                         "mode": "call"}, headers=same)
    assert r.status_code == 200 and "HTTP <b>200</b>" in r.text and "Hello play" in r.text
    r = post(world, "services/Cart", {"handler": "add", "key": "bob", "body": '"pear"',
                                      "mode": "send"}, headers=same)
    assert "HTTP <b>202</b>" in r.text and 'href="../invocations/inv_' in r.text


def test_sql_console(world: World) -> None:
    r = get(world, "sql?query=" + "SELECT id, status FROM sys_invocation LIMIT 3")
    assert r.status_code == 200 and "3 rows" in r.text and 'href="invocations/inv_' in r.text
    r = get(world, "sql?query=DELETE+FROM+sys_invocation")
    assert r.status_code == 400 and "Query refused" in r.text
    r = get(world, "sql?query=SELEC+nonsense")
    assert r.status_code == 400 and "SQL error" in r.text


def test_register_and_remove_deployment_form(world: World) -> None:
    same = {"sec-fetch-site": "same-origin"}
    r = post(world, "deployments", {"uri": "http://127.0.0.1:1/", "headers": ""},
             headers=same, follow_redirects=True)
    assert r.status_code == 200 and 'role="alert"' in r.text  # discovery failed, shown
    r = post(world, "deployments", {"uri": world.env.services.url, "headers": "x-a: 1",
                                    "use_http_11": "1", "force": "1"},
             headers=same, follow_redirects=True)
    assert "registered" in r.text.lower()


# -- service options, relative times, the timeline, the schema-driven playground ------------

SAME = {"sec-fetch-site": "same-origin"}


def _options(world: World, service: str) -> dict:
    r = world.env.client.get(f"{world.env.admin}/services/{service}")
    assert r.status_code == 200, r.text
    return r.json()


def test_service_options_form_confirms_then_patches(world: World) -> None:
    html = get(world, "services/Shop").text
    assert 'name="op" value="options"' in html
    assert re.search(r'id="opt-journal_retention" name="journal_retention" value="1d"', html)
    assert 'name="workflow_completion_retention"' not in html  # not a workflow
    before = _options(world, "Shop")
    current = {k: before[k] for k in ("idempotency_retention", "journal_retention",
                                      "inactivity_timeout", "abort_timeout")}
    # first step: a confirmation listing the one change; nothing changed yet
    r = post(world, "services/Shop", {"op": "options", "public": "true",
                                      **current, "journal_retention": "2h"}, headers=SAME)
    assert r.status_code == 200 and "Change the options of Shop?" in r.text
    assert "journal retention: 1d → 2h" in r.text and "abort timeout" not in r.text
    assert 'name="journal_retention" value="2h"' in r.text and 'name="confirm"' in r.text
    assert _options(world, "Shop")["journal_retention"] == "1d"
    # confirmed: applied, and the page says what the API now answers
    r = post(world, "services/Shop", {"op": "options", "journal_retention": "2h",
                                      "confirm": "yes"}, headers=SAME, follow_redirects=True)
    assert r.status_code == 200 and "Saved. journal retention: 2h." in r.text
    assert _options(world, "Shop")["journal_retention"] == "2h"
    # the API's own refusal, shown
    r = post(world, "services/Shop", {"op": "options", "abort_timeout": "soon",
                                      "confirm": "yes"}, headers=SAME, follow_redirects=True)
    assert 'role="alert"' in r.text and "abort_timeout: failed to parse" in r.text
    assert _options(world, "Shop")["abort_timeout"] == before["abort_timeout"]
    # request/response deployment: the timeout is kept but not applied, and the page says so
    r = post(world, "services/Shop", {"op": "options", "inactivity_timeout": "90s",
                                      "confirm": "yes"}, headers=SAME, follow_redirects=True)
    assert "will not be applied" in r.text and "RT0021" in r.text
    assert _options(world, "Shop")["inactivity_timeout"] == "0s"
    r = post(world, "services/Shop", {"op": "options", "journal_retention": "2h"},
             headers=SAME, follow_redirects=True)
    assert "Nothing to change." in r.text
    r = post(world, "services/Shop", {"op": "options", "public": "false", "confirm": "yes"},
             headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403 and _options(world, "Shop")["public"] is True
    r = post(world, "services/Shop", {"op": "options", "journal_retention": "1d",
                                      "confirm": "yes"}, headers=SAME)
    assert r.status_code == 303 and _options(world, "Shop")["journal_retention"] == "1d"


def test_workflow_options_include_completion_retention(world: World) -> None:
    assert 'name="workflow_completion_retention"' in get(world, "services/Signup").text


TIME = re.compile(r'<time datetime="(\d{4}-\d\d-\d\dT[\d:.]+Z)" title="\1" data-rel>([^<]+)</time>')


def test_times_are_relative_with_the_absolute_time_kept(world: World) -> None:
    listed = TIME.findall(get(world, "invocations").text)
    assert listed and all(re.fullmatch(r"just now|\d+ (s|min|h|d) ago", t) for _, t in listed)
    html = get(world, "invocations/" + world.ids["scheduled"]).text
    times = dict((t, iso) for iso, t in TIME.findall(html))
    assert any(re.fullmatch(r"in (59|60) min|in 1 h", t) for t in times), times
    # the absolute time is written out beside it on the detail page
    iso = next(iso for iso, t in TIME.findall(html) if t.startswith("in "))
    assert f'<small class="abs">{iso}</small>' in html


def test_timeline_shows_durations_and_retries(world: World) -> None:
    html = get(world, "invocations/" + world.ids["shop"]).text
    # its retention: how long, and when it ends (relative, the absolute time kept)
    assert re.search(r'<dd>1 d, ends <time datetime="[^"]+" title="[^"]+" data-rel>in 23 h'
                     r'</time></dd>', html)
    # CSP-clean: the bars are placed by SVG attributes, never by an inline style or script
    assert " style=" not in html and "<script>" not in html
    section = html[html.index('id="timeline-h"'):].split("</section>")[0]
    assert "invocation" in section and "took" in section
    sleep = re.search(r'<a href="#entry-(\d+)">#\1 Sleep</a>.*?class="tl-note">([^<]*)<', section)
    assert sleep and "took" in sleep.group(2), section
    run = re.search(r'#\d+ Run “price”</a>.*?class="tl-note">([^<]*)<', section)
    assert run and "took" in run.group(1)
    for x, w in re.findall(r'class="tl-bar[^"]*" x="([\d.]+)" y="1" width="([\d.]+)"', section):
        assert 0 <= float(x) <= 1000 and 0 < float(w) <= 1000
    # a retrying invocation: its last attempt and the back-off before the next one
    html = get(world, "invocations/" + world.ids["backing-off"]).text
    section = html[html.index('id="timeline-h"'):].split("</section>")[0]
    assert "last attempt" in section and "backing off" in section
    assert re.search(r"next attempt (in \d+ (s|min)|just now|\d+ s ago)", section), section
    assert "so far" in section  # not completed: the axis ends now
    # before it starts: a delayed one, and one queued behind its key's lock
    html = get(world, "invocations/" + world.ids["scheduled"]).text
    section = html[html.index('id="timeline-h"'):].split("</section>")[0]
    assert re.search(r"scheduled</span>.*?starts in (59|60) min", section, re.S), section
    html = get(world, "invocations/" + world.ids["pending"]).text
    section = html[html.index('id="timeline-h"'):].split("</section>")[0]
    assert "in the inbox" in section


def test_playground_form_from_the_input_schema(world: World) -> None:
    html = get(world, "services/Shop").text
    assert 'name="f:item"' in html and 'data-kind="string"' in html
    assert re.search(r'name="f:quantity" type="number" data-kind="integer" step="1" '
                     r'min="1" max="10" value="1"', html)
    assert '<option value="M" selected>M</option>' in html  # the enum, its default chosen
    assert 'name="f:gift" data-kind="boolean"' in html
    assert "What to order" in html  # the field's description
    assert "Raw JSON instead" in html and 'value="call-json" formnovalidate' in html
    curl = re.search(r"<summary>as curl</summary><pre tabindex=\"0\">(.*?)</pre>", html, re.S)
    assert curl and curl.group(1).startswith("curl -X POST &#39;http://127.0.0.1:")
    assert "/Shop/order&#39;" in curl.group(1) and "--data &#39;{&#34;item&#34;:" in curl.group(1)
    assert "/Cart/&lt;key&gt;/add&#39;" in get(world, "services/Cart").text
    # Greeter's input is any object: no form, the JSON text only
    assert 'name="f:' not in get(world, "services/Greeter").text

    def orders() -> int:
        return len(world.env.query(
            "SELECT id FROM sys_invocation WHERE target = 'Shop/order'"))

    n = orders()
    fields = {"handler": "order", "f:item": "<b>cake</b>", "f:quantity": "3", "f:size": "L",
              "f:gift": "true", "f:note": ""}
    r = post(world, "services/Shop", {**fields, "mode": "call"}, headers=SAME)
    assert r.status_code == 200 and "HTTP <b>200</b>" in r.text, r.text
    assert "&lt;b&gt;cake&lt;/b&gt;" in r.text and "<b>cake</b>" not in r.text
    shown = r.text.replace("&#34;", '"')
    assert '"total": 9' in shown and '"gift": true' in shown and '"note": null' in shown
    assert orders() == n + 1
    # refused before any call: the server checks what the browser checked
    for bad, message in [({"f:item": ""}, "item: required"),
                         ({"f:quantity": "11"}, "quantity: must be at most 10"),
                         ({"f:quantity": "1.5"}, "quantity: expected an integer"),
                         ({"f:size": "XL"}, "size: must be one of S, M, L")]:
        r = post(world, "services/Shop", {**fields, **bad, "mode": "call"}, headers=SAME)
        assert r.status_code == 400 and message in r.text, (bad, r.text[-2000:])
        # what was typed stays in the form
        assert 'name="f:item" data-kind="string" value="' + (
            "" if bad.get("f:item") == "" else "&lt;b&gt;cake&lt;/b&gt;") + '"' in r.text
    for body, message in [("{nope", "The body is not JSON"),
                          ('{"quantity": 2}', "item: required"),
                          ('["tea"]', "the body must be a JSON object")]:
        r = post(world, "services/Shop", {"handler": "order", "body": body,
                                          "mode": "call-json"}, headers=SAME)
        assert r.status_code == 400 and message in r.text, (body, r.text[-2000:])
    assert orders() == n + 1
    r = post(world, "services/Shop", {"handler": "order", "body": '{"item": "raw"}',
                                      "mode": "send-json"}, headers=SAME)
    assert r.status_code == 200 and "HTTP <b>202</b>" in r.text
    assert orders() == n + 2
