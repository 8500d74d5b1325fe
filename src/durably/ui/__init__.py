"""The web UI: invocations, services, deployments and state in a browser, served on the
admin port under `/ui/` (server-rendered pages; the room's own small script and stylesheet).

`ui_routes` builds the routes; `durably serve --no-ui` leaves them out and `--ui-read-only`
serves the pages without any action.
"""

from durably.ui.app import ui_routes

__all__ = ["ui_routes"]
