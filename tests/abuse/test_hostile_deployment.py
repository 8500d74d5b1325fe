"""A deployment that breaks the service protocol (``hostile.py``), driven by hypothesis.

Each example is one invocation of ``Hostile/{key}/run`` whose attempts play a generated
script: frames out of order, a second End, completions and suspensions on ids nobody
announced, frames longer than the limit, truncated frames, garbage protobuf, unknown
message types, a stream reset mid-frame, stalls past the inactivity timeout. For each:

* the invocation either completes (the script happened to be a valid answer) or records a
  clear failure (one line, no traceback) and goes on retrying; it is then killed;
* the server log holds no traceback for it;

and across all of them: well-behaved invocations on another deployment keep completing the
whole time, the server's RSS stays bounded and the store passes ``integrity_check``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.abuse.hostile import END, HostileDeployment, frame, message, output
from tests.support.harness import Env, poll, register

from durably.protocol.framing import DEFAULT_MAX_FRAME_LENGTH
from durably.protocol.messages import MessageType, pb

pytestmark = [pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("DURABLY_HOSTILE_EXAMPLES", "40"))
STALL_S = 2.5  # longer than the inactivity timeout below (1 s)
RSS_GROWTH_LIMIT = 150 * 1024 * 1024

_valid = output() + END
_u32 = st.integers(0, 2**32 - 1)
_types = st.one_of(st.sampled_from([int(t) for t in MessageType]), st.integers(0, 0xFFFF))


def _split(data: bytes, at: int) -> list[tuple[str, bytes]]:
    at = at % (len(data) + 1)
    return [("frames", data[:at]), ("frames", data[at:])]


_step = st.one_of(
    st.just([("frames", output())]),
    st.just([("frames", END)]),
    st.just([("frames", _valid)]),
    # a valid answer delivered in two pieces cut anywhere (inside a header or a body)
    st.integers(0, len(_valid)).map(lambda at: _split(_valid, at)),
    # garbage protobuf under any (known or unknown) message type
    st.builds(lambda t, b: [("frames", frame(t, b))], _types, st.binary(max_size=48)),
    # completions and suspensions referring to ids nobody announced
    _u32.map(lambda i: [("frames", message(
        pb.ProposeRunCompletionMessage(result_completion_id=i, value=b"1")))]),
    _u32.map(lambda i: [("frames", message(pb.SuspensionMessageV6(waiting_completions=[i])))]),
    _u32.map(lambda i: [("frames", message(
        pb.SleepCommandMessage(wake_up_time=1, result_completion_id=i)))]),
    # a header announcing more than the limit; one announcing a body that never comes
    st.just([("frames", frame(MessageType.OUTPUT_COMMAND, b"")[:4]
                         + (DEFAULT_MAX_FRAME_LENGTH + 1).to_bytes(4, "big"))]),
    st.integers(1, 1 << 20).map(lambda n: [("frames", frame(MessageType.OUTPUT_COMMAND, b"")[:4]
                                             + (n + 10).to_bytes(4, "big") + b"\x0a" * 4)]),
    st.just([("sleep", STALL_S)]),
    st.just([("reset",)]),
)
scripts = st.lists(_step, min_size=1, max_size=5).map(lambda steps: [s for g in steps for s in g])


class GoodLoad:
    """A thread that keeps calling a well-behaved handler; counts answers and errors."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.done = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = self.env.call("FaultCounter", "add", 1, key="good", client=client)
                    if r.status_code == 200:
                        self.done += 1
                    else:
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))
                time.sleep(0.05)


def _settled(env: Env, inv_id: str) -> dict:
    """The invocation's status once it completed or recorded a failure."""

    def check() -> dict:
        r = env.client.get(f"{env.admin}/invocations/{inv_id}")
        assert r.status_code == 200, r.text
        view = r.json()
        # completed, failing (a recorded failure) or parked waiting for a completion that
        # the script announced (suspended): never running without a word
        assert view["status"] in ("completed", "suspended") or view.get("last_failure"), view
        return view

    return poll(check, timeout=30, interval=0.1)


def test_hostile_deployment(fault_env) -> None:
    hostile = HostileDeployment()
    hostile.start()
    try:
        env: Env = fault_env()
        register(env.admin, hostile.url, use_http_11=False)
        r = env.patch_service("Hostile", inactivity_timeout="1s", abort_timeout="1s")
        assert r.status_code == 200, r.text
        server = psutil.Process(env.server.proc.pid)
        good = GoodLoad(env)
        good.thread.start()
        poll(lambda: (assert_(good.done > 0)), timeout=30)
        rss_start = server.memory_info().rss
        outcomes: dict[str, int] = {}

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(script=scripts)
        def one_invocation(script: list) -> None:
            key = env.new_key()
            hostile.scripts[key] = script
            inv_id, _ = env.send("Hostile", "run", key=key)
            view = _settled(env, inv_id)
            if view["status"] == "completed":
                outcomes["completed"] = outcomes.get("completed", 0) + 1
                return
            failure = view.get("last_failure") or view["status"]
            assert "\n" not in failure.strip() and "Traceback" not in failure, failure
            outcomes[failure[:60]] = outcomes.get(failure[:60], 0) + 1
            k = env.kill(inv_id)
            assert k.status_code in (200, 202, 409), k.text
            poll(lambda: assert_(env.client.get(f"{env.admin}/invocations/{inv_id}")
                                 .json()["status"] == "completed"), timeout=30)

        before = good.done
        one_invocation()
        good.stop.set()
        good.thread.join(30)
        assert not good.errors, good.errors[:5]
        assert good.done > before, "well-behaved invocations stopped while the hostile ran"
        growth = server.memory_info().rss - rss_start
        assert growth < RSS_GROWTH_LIMIT, f"server RSS grew by {growth >> 20} MiB"
        assert env.server.proc.poll() is None
        assert "Traceback" not in env.server.log_tail(2000), env.server.log_tail(200)
        db = sqlite3.connect(f"file:{env.server.data_dir / 'durably.sqlite3'}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            db.close()
        counter = env.call_json("FaultCounter", "get", key="good", idem=False)
        assert counter == good.done  # every answered add applied exactly once
        print("outcomes:", outcomes)
    finally:
        hostile.close()


def assert_(condition: bool) -> None:
    assert condition
