"""The Jepsen-style checker (tests/cluster/checker): its check over synthetic histories
reports each kind of violation it exists for, and a short run against three real nodes on
one PostgreSQL under the nemesis finds none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.cluster.checker.history import Attempt, Final, Op, check


def _entry(token: str, seq: int, a: float, **extra: Any) -> dict[str, Any]:
    return {"t": token, "s": seq, "a": a, "b": a + 0.01, **extra}


def _runs(final: Final) -> Counter[tuple[str, str]]:
    """One execution per committed ctx.run (no repetition)."""
    runs: Counter[tuple[str, str]] = Counter()
    for lists in (final.sets, final.relays):
        for entries in lists.values():
            for e in entries:
                runs[("start", e["t"])] += 1
                runs[("end", e["t"])] += 1
                if "w" in e:
                    runs[("sent", e["t"])] += 1
    for token, out in final.flows.items():
        if out is not None:
            runs[("slept", token)] += 1
            runs[("woke", token)] += 1
    return runs


def _ok(token: str, kind: str, key: str, invoked: float, acked: float | None,
        result: Any = None, **kw: Any) -> Op:
    op = Op(token=token, kind=kind, key=key, invoked=invoked, acked=acked, result=result, **kw)
    op.attempts.append(Attempt("n1", invoked, acked or invoked + 1, "ok" if acked else "503"))
    return op


def _good() -> tuple[list[Op], Final]:
    """A clean history with one operation of every kind, two of them on key s1."""
    ops = [
        _ok("a1", "add", "s1", 10.0, 10.2, 0),
        _ok("a2", "add", "s1", 10.3, 10.5, 1),
        _ok("snd", "send", "s2", 11.0, 11.1, delay_ms=1000),
        _ok("rl", "relay", "s3", 12.0, 12.3, relay_key="r1"),
        _ok("rs", "relay_send", "s4", 12.0, 12.1, relay_key="r2", delay_ms=500),
        _ok("wf", "flow", "s5", 13.0, 13.1, delay_ms=2000),
        _ok("maybe", "add", "s6", 14.0, None),  # never acknowledged, never applied: fine
    ]
    final = Final(
        sets={
            "s1": [_entry("a1", 0, 10.05), _entry("a2", 1, 10.35)],
            "s2": [_entry("snd", 0, 12.05)],
            "s3": [_entry("rl", 0, 12.1)],
            "s4": [_entry("rs", 0, 12.7)],
            "s5": [_entry("wf", 0, 15.2)],
        },
        relays={
            "r1": [_entry("rl", 0, 12.2, r=0)],
            "r2": [_entry("rs", 0, 12.06, r=-1, w=12.05)],
        },
        flows={"wf": {"slept": 13.1, "woke": 15.15, "seq": 0}},
        runs=Counter(),
    )
    final.runs = _runs(final)
    return ops, final


def test_a_clean_history_passes_and_counts_repetitions() -> None:
    ops, final = _good()
    final.runs[("start", "a1")] += 2  # the first attempt's side effect ran again twice
    final.runs[("woke", "ghost-attempt")] += 1  # an attempt whose journal never committed
    report = check(ops, final)
    assert report.violations == []
    assert report.run_repetitions == 3
    assert (report.ops, report.acked, report.never_acked, report.effects) == (7, 6, 1, 8)


def _violations(ops: list[Op], final: Final) -> list[str]:
    return check(ops, final).violations


def test_a_lost_acknowledged_add_is_reported() -> None:
    ops, final = _good()
    final.sets["s1"] = [final.sets["s1"][0]]
    assert any("a2 (add): acknowledged but its effect is missing" in v
               for v in _violations(ops, final))


def test_a_lost_acknowledged_workflow_is_reported() -> None:
    ops, final = _good()
    final.flows["wf"] = None
    del final.sets["s5"]
    found = _violations(ops, final)
    assert any("wf: acknowledged workflow has no output" in v for v in found)
    assert any("wf (flow): acknowledged but its effect is missing" in v for v in found)


def test_a_doubled_effect_is_reported() -> None:
    ops, final = _good()
    final.sets["s1"].append(_entry("a1", 2, 11.0))
    assert any("a1 (add): applied 2 times" in v for v in _violations(ops, final))
    # an unacknowledged operation may be applied once, but not twice
    ops, final = _good()
    final.sets["s6"] = [_entry("maybe", 0, 14.5), _entry("maybe", 1, 14.6)]
    assert any("maybe (add): applied 2 times" in v for v in _violations(ops, final))


def test_a_doubled_timer_is_reported() -> None:
    ops, final = _good()
    final.sets["s2"].append(_entry("snd", 1, 12.5))  # the delayed send fired twice
    final.sets["s5"].append(_entry("wf", 1, 15.6))  # the workflow woke twice
    found = _violations(ops, final)
    assert any("snd (send): applied 2 times" in v for v in found)
    assert any("wf (flow): applied 2 times" in v for v in found)


def test_an_early_timer_is_reported() -> None:
    ops, final = _good()
    final.sets["s2"][0]["a"] = 11.5  # sent at 11.0 with 1 s of delay
    assert final.flows["wf"] is not None
    final.flows["wf"]["woke"] = 14.0  # slept at 13.1 for 2 s
    final.sets["s4"][0]["a"] = 12.3  # relayed at 12.05 with 0.5 s of delay
    found = _violations(ops, final)
    assert any("snd: delayed send ran 0.500 s early" in v for v in found)
    assert any("wf: workflow woke 1.100 s early" in v for v in found)
    assert any("rs: delayed send ran 0.250 s early" in v for v in found)


def test_overlapping_exclusive_runs_are_reported() -> None:
    ops, final = _good()
    # a2 started before a1 ended, and both read the empty list
    final.sets["s1"] = [_entry("a1", 0, 10.05), {"t": "a2", "s": 0, "a": 10.03, "b": 10.2}]
    found = _violations(ops, final)
    assert any("a1 and a2 overlapped" in v for v in found)
    assert any("entry 1 (a2) has seq 0" in v for v in found)


def test_an_overwritten_acknowledged_write_is_reported() -> None:
    ops, final = _good()
    final.sets["s1"] = [_entry("a2", 0, 10.35)]  # a2 overwrote a1's write
    found = _violations(ops, final)
    assert any("a1 (add): acknowledged but its effect is missing" in v for v in found)
    assert any("a2: acknowledged with seq 1, but it is at 0" in v for v in found)


def test_real_time_order_and_phantoms_are_checked() -> None:
    ops, final = _good()
    a1, a2 = final.sets["s1"]
    final.sets["s1"] = [{**a2, "s": 0, "a": 10.05, "b": 10.06}, {**a1, "s": 1, "a": 10.35,
                                                                "b": 10.36}]
    ops[0].result, ops[1].result = 1, 0
    assert any("a2 (at 0) comes after an operation acknowledged before it was sent" in v
               for v in _violations(ops, final))
    ops, final = _good()
    final.relays["r1"].append(_entry("nobody", 1, 13.0, r=5))
    assert any("nobody: in the final state but never sent" in v for v in _violations(ops, final))


def test_a_lost_relay_and_a_mismatched_call_result_are_reported() -> None:
    ops, final = _good()
    final.relays["r1"] = []
    assert any("rl (relay): acknowledged relay missing" in v for v in _violations(ops, final))
    ops, final = _good()
    final.relays["r1"][0]["r"] = 3
    assert any("rl: the relay's call returned seq 3" in v for v in _violations(ops, final))


@pytest.mark.timeout(420)
@pytest.mark.restart
def test_short_run_under_the_nemesis_finds_no_violation(tmp_path: Path) -> None:
    """45 s of mixed load over three nodes while the nemesis kills, pauses and cuts nodes
    off from PostgreSQL; then heal, retry, quiesce and check."""
    from tests.cluster.checker.run import ACTIONS, Settings, run

    result = run(tmp_path, Settings(duration=45.0), history=tmp_path / "history.json")
    print("\n" + result.summary())
    assert result.report.violations == [], "\n".join(result.report.violations[:40])
    assert {e.action for e in result.events} == set(ACTIONS), result.events
    assert result.report.acked > 50
    assert result.report.never_acked == 0
    assert result.exits == [], result.exits
