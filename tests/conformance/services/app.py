"""ASGI entry point: ``hypercorn tests.conformance.services.app:app``.

``SERVICES`` (comma separated contract names) selects what the endpoint exposes;
all services when unset or empty.
"""

from __future__ import annotations

import os

import restate
from tests.conformance.services import ALL_SERVICES


def _selected() -> list:
    raw = os.environ.get("SERVICES", "").strip()
    if not raw:
        return list(ALL_SERVICES.values())
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_SERVICES]
    if unknown:
        raise RuntimeError(f"unknown services in SERVICES: {unknown}; known: {sorted(ALL_SERVICES)}")
    return [ALL_SERVICES[n] for n in names]


app = restate.app(services=_selected())
