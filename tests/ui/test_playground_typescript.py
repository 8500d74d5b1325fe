"""The playground's schema form for a service written with the official TypeScript SDK:
``TsShop/order`` (tests/e2e/typescript/service.mjs) declares its input's JSON schema through
a ``JsonSerde``; the service page draws the form from it, and a call made with the form's
fields reaches the handler. Node and the pinned SDK as the TypeScript end-to-end test uses
them (no npm or node is a failure, not a skip)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.e2e.test_typescript_service import NodeService, ensure_npm_deps
from tests.support.harness import make_server, register

SAME = {"sec-fetch-site": "same-origin"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ensure_npm_deps()
    base = tmp_path_factory.mktemp("ui-typescript")
    node = NodeService(base)
    server = make_server(base / "server")
    try:
        node.start()
        server.start()
        register(server.admin_url, node.url, use_http_11=False)
        yield server.admin_url + "/ui/"
    finally:
        server.close()
        node.close()


def test_typescript_schema_form(ui: str) -> None:
    with httpx.Client(timeout=30) as client:
        html = client.get(ui + "services/TsShop").text
        assert 'name="f:item" data-kind="string"' in html and "What to order" in html
        assert re.search(r'name="f:quantity" type="number" data-kind="integer" step="1" '
                         r'min="1" max="10"', html)
        assert 'name="f:express" data-kind="boolean"' in html
        assert re.search(r'<option value="L"\s*>L</option>', html)
        fields = {"handler": "order", "f:item": "bun", "f:quantity": "2", "f:express": "true",
                  "f:size": ""}
        r = client.post(ui + "services/TsShop", data={**fields, "mode": "call"}, headers=SAME)
        assert r.status_code == 200 and "HTTP <b>200</b>" in r.text, r.text[-3000:]
        result = re.search(r'<div class="result".*?</div>', r.text, re.S)
        assert result is not None
        shown = result.group(0).replace("&#34;", '"')
        assert '"total": 6' in shown and '"express": true' in shown and '"size"' not in shown
        r = client.post(ui + "services/TsShop", data={**fields, "f:quantity": "0",
                                                      "mode": "call"}, headers=SAME)
        assert r.status_code == 400 and "quantity: must be at least 1" in r.text
        r = client.post(ui + "services/TsShop", data={"handler": "order", "mode": "call-json",
                                                      "body": '{"item": ""}'}, headers=SAME)
        assert r.status_code == 400 and "item: at least 1 characters" in r.text
