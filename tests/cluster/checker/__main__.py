"""`python -m tests.cluster.checker --duration 600`: one long checker run (see `run.py`);
prints the summary, writes the whole history as JSON, exits 1 on any violation.

    flock /tmp/durably-bench.lock python -m tests.cluster.checker --duration 600 \
        [--placement spread] [--seed N] [--history checker-history.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.cluster.checker.run import Settings, run


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.checker",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load (300)")
    ap.add_argument("--workers", type=int, default=defaults.workers)
    ap.add_argument("--ttl", type=float, default=defaults.ttl, help="lease TTL in seconds")
    ap.add_argument("--interval", type=float, default=defaults.interval,
                    help="mean seconds between nemesis events")
    ap.add_argument("--placement", default=defaults.placement,
                    help="the nodes' --placement (default: theirs; or DURABLY_CHECKER_PLACEMENT)")
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--history", type=Path, default=Path("checker-history.json"),
                    help="where to write the recorded history and the final state")
    ap.add_argument("--actions", default=",".join(defaults.actions),
                    help="what the nemesis does, comma list of kill,pause,cut")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the nodes' logs in this directory (default: a temporary one)")
    args = ap.parse_args(argv)
    settings = Settings(duration=args.duration, workers=args.workers, ttl=args.ttl,
                        interval=args.interval, placement=args.placement, seed=args.seed,
                        actions=tuple(a for a in args.actions.split(",") if a))
    if args.keep is not None:
        result = run(args.keep, settings, history=args.history)
    else:
        with tempfile.TemporaryDirectory(prefix="durably-checker-") as tmp:
            result = run(Path(tmp), settings, history=args.history)
    print(result.summary())
    for v in result.report.violations[:50]:
        print("VIOLATION", v)
    for e in result.exits:
        print("unexpected node exit:", e)
    print(f"history: {args.history}")
    return 1 if result.report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
