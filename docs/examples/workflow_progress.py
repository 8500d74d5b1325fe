"""Workflow status polling with a progress display.

Submit a workflow run, then poll its shared ``status`` handler and draw a progress bar
(rich) until ``output()`` stops raising ``NotReady``.

    python docs/examples/workflow_progress.py new-user@example.com
"""

from __future__ import annotations

import sys
import time

from pydantic import BaseModel
from rich.progress import Progress as Bar

from durably.client import Client, NotReady


class Progress(BaseModel):
    step: str
    done: int
    total: int


def run_signup(client: Client, email: str, poll_every: float = 0.2) -> str:
    wf = client.workflow("Signup", email)
    handle = wf.submit(email)  # "PreviouslyAccepted" if this signup already started
    with Bar(transient=True) as bar:
        task = bar.add_task(f"signup {handle.status.lower()}", total=None)
        while True:
            try:
                result = wf.output(output=str)
            except NotReady:
                progress = wf.call("status", output=Progress | None)  # type: ignore[arg-type]
                if progress is not None:
                    bar.update(task, total=progress.total, completed=progress.done,
                               description=progress.step)
                time.sleep(poll_every)
                continue
            bar.update(task, completed=bar.tasks[0].total or 1)
            return result


def main() -> None:
    with Client() as client:
        print(run_signup(client, sys.argv[1] if len(sys.argv) > 1 else "new-user@example.com"))


if __name__ == "__main__":
    main()
