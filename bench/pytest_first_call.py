"""Time from `python -m pytest` starting to the first answered call through `durably_server`.

    python -m bench.pytest_first_call [--runs 5]

Each run is a fresh pytest process on a one-test file (a Greeter app registered with the
fixture, one call through the client). Plugins other than durably's (and pytest's own)
are not loaded, as in a project that only installed durably: third-party plugins add
their own start-up time. Prints every run and the median, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = '''
import os, time
import restate
from restate import Context

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello {name}!"


app = restate.app([greeter])


def test_first_call(durably_server):
    durably_server.register(app)
    with durably_server.client() as client:
        assert client.service("Greeter").call("greet", "Ann") == "Hello Ann!"
    print(f"FIRST-CALL-AT {time.time()}")
'''


def one_run(directory: Path) -> float:
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    started = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "-p", "durably.testing.plugin", "--rootdir", str(directory),
         str(directory / "test_first_call.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    for line in r.stdout.splitlines():
        if line.startswith("FIRST-CALL-AT "):
            return float(line.split()[1]) - started
    raise SystemExit(f"the test did not answer:\n{r.stdout}\n{r.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "test_first_call.py").write_text(TEST)
        times = []
        for i in range(args.runs):
            times.append(one_run(directory))
            print(f"run {i + 1}: {times[-1]:.2f} s")
    print(f"median of {args.runs}: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
