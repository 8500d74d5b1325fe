"""durably.testing: a durable server inside a pytest session, with nothing to install.

Installing durably registers the pytest plugin (``durably.testing.plugin``, through the
``pytest11`` entry point); its session fixture ``durably_server`` is a `DurablyServer`:

    def test_greet(durably_server):
        durably_server.register(app)          # app = restate.app([...])
        with durably_server.client() as c:
            assert c.service("Greeter").call("greet", "Ann", output=str) == "Hello Ann!"

The classes work without pytest too (``with DurablyServer(path) as server: ...``).
See docs/testing.md.
"""

from durably.testing.apps import AppServer
from durably.testing.server import DurablyServer, DurablyServerError

__all__ = ["AppServer", "DurablyServer", "DurablyServerError"]
