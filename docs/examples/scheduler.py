"""Background scheduler: a cron-style job that schedules delayed reminders.

The idempotency key is derived from what the job means (user + day), so running the job
twice (a retry, an overlapping cron, a second replica) schedules each reminder once.

    python docs/examples/scheduler.py
"""

from __future__ import annotations

import datetime as dt

from durably.client import Client, RetryPolicy, SendHandle


def schedule_reminders(
    client: Client, users: list[str], day: dt.date, delay: dt.timedelta
) -> list[SendHandle]:
    handles = []
    for user in users:
        handle = client.object("Reminders", user).send(
            "remind",
            f"your report for {day.isoformat()} is ready",
            delay=delay,
            idempotency_key=f"daily-report/{day.isoformat()}",
        )
        handles.append(handle)
    return handles


def main() -> None:
    # retry=...: connection trouble and overload are retried, which the idempotency keys make safe
    with Client(retry=RetryPolicy(max_attempts=5)) as client:
        today = dt.datetime.now(dt.UTC).date()
        for h in schedule_reminders(client, ["alice", "bob"], today, dt.timedelta(seconds=2)):
            print(h.invocation_id, h.status, h.execution_time)


if __name__ == "__main__":
    main()
