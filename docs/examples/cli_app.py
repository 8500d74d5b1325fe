"""CLI app: one blocking call per command, URLs from the environment.

    export DURABLY_URL=http://localhost:8080 DURABLY_ADMIN_URL=http://localhost:9070
    python docs/examples/cli_app.py greet Alice
    python docs/examples/cli_app.py output inv_1...
    python docs/examples/cli_app.py cancel inv_1...
"""

from __future__ import annotations

import argparse
import sys

from durably.client import Client, ClientError, NotReady


def main(argv: list[str] | None = None, client: Client | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greeter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("greet").add_argument("name")
    sub.add_parser("output").add_argument("invocation_id")
    sub.add_parser("cancel").add_argument("invocation_id")
    args = parser.parse_args(argv)

    # Client() reads DURABLY_URL / RESTATE_URL; retry=True retries only what is safe to resend
    with client or Client(retry=True) as c:
        try:
            if args.command == "greet":
                print(c.service("Greeter").call("greet", args.name, output=str, timeout=30))
            elif args.command == "output":
                print(c.invocation(args.invocation_id).output())
            else:
                c.invocation(args.invocation_id).cancel()
                print("cancelled")
        except NotReady:
            print("still running", file=sys.stderr)
            return 2
        except ClientError as e:
            hint = " (safe to retry)" if e.retry_safe else ""
            print(f"error: {e}{hint}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
