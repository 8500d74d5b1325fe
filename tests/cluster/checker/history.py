"""The checker's history and its verdict: a pure function of what the clients recorded and
what the cluster holds at the end (no I/O here).

The clients record every *operation* (one token, one idempotency key) with every attempt
and, if one came, its acknowledgement. Kinds (see `services.py` for the handlers):

- `add`: `POST /CheckSet/{key}/add` (token), acknowledged with the token's `seq`.
- `send`: `POST /CheckSet/{key}/add/send?delay=...`, acknowledged with 202.
- `relay`: `POST /CheckRelay/{relay_key}/forward` calling `CheckSet/{key}/add`.
- `relay_send`: the same with a delayed one-way send to `CheckSet/{key}/add`.
- `flow`: `POST /CheckFlow/{token}/run/send`: sleep `delay_ms`, then `CheckSet/{key}/add`.

The final state is every `CheckSet` and `CheckRelay` key's list of entries, the output of
every workflow, and the count of executions of each `ctx.run` closure.

Invariants (each broken one is a violation):
1. every acknowledged operation's token is in its key's list exactly once (nothing lost,
   nothing doubled); an unacknowledged one at most once; no token nobody sent;
2. an `add`'s acknowledged `seq` is the token's position (an acknowledged write is never
   overwritten), and a relay's callee `seq` too;
3. each key's list is a sequence 0, 1, 2, ... and its handler runs do not overlap in time
   (`b` of one entry before `a` of the next): exclusive handlers ran one at a time;
4. real-time order: an operation acknowledged before another was first sent comes first;
5. timers: a delayed add does not start before its delay, a workflow does not wake early,
   and every acknowledged workflow finished with its output;
6. `ctx.run` repetitions (a closure executed more often than its committed journal entry)
   are counted and reported, not violations: side effects are at least once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# timers fire on the server's clock and the handler reads the services process's clock:
# the same machine, but allow for float rounding of the millisecond timestamps
CLOCK_SLACK_S = 0.005
# kinds whose effect happens inside the acknowledged request (real-time order applies)
SYNC_KINDS = ("add", "relay")
KINDS = ("add", "send", "relay", "relay_send", "flow")


@dataclass
class Attempt:
    node: str
    start: float  # wall clock, seconds
    end: float
    outcome: str  # "ok", an HTTP status ("503") or an error class name ("ReadTimeout")


@dataclass
class Op:
    token: str  # also the idempotency key (and the workflow id of a flow)
    kind: str
    key: str  # the CheckSet key the effect lands in
    relay_key: str | None = None
    delay_ms: int = 0
    invoked: float = 0.0  # first attempt sent
    acked: float | None = None  # acknowledgement received (None: never)
    acked_after_heal: bool = False
    result: Any = None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class Final:
    sets: dict[str, list[dict[str, Any]]]
    relays: dict[str, list[dict[str, Any]]]
    flows: dict[str, dict[str, Any] | None]  # workflow id -> output (None: none)
    runs: Counter[tuple[str, str]]  # (ctx.run name, token) -> executions


@dataclass
class Report:
    ops: int = 0
    attempts: int = 0
    acked: int = 0  # acknowledged while the nemesis ran
    acked_after_heal: int = 0  # indeterminate then, acknowledged when retried after healing
    never_acked: int = 0
    effects: int = 0  # entries in the final state
    run_executions: int = 0
    run_repetitions: int = 0  # executions beyond one per committed ctx.run
    by_kind: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.ops} operations ({', '.join(f'{k} {v}' for k, v in self.by_kind.items())}), "
            f"{self.attempts} attempts, {self.acked} acknowledged under the nemesis, "
            f"{self.acked_after_heal} acknowledged only after healing, {self.never_acked} never; "
            f"{self.effects} effects; ctx.run: {self.run_executions} executions, "
            f"{self.run_repetitions} repetitions; violations: {len(self.violations)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positions(lists: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, int]]]:
    where: dict[str, list[tuple[str, int]]] = {}
    for key, entries in lists.items():
        for i, e in enumerate(entries):
            where.setdefault(str(e.get("t")), []).append((key, i))
    return where


def _check_lists(name: str, lists: dict[str, list[dict[str, Any]]], out: list[str]) -> None:
    """Invariant 3 on every key of one object type."""
    for key, entries in sorted(lists.items()):
        for i, e in enumerate(entries):
            if e.get("s") != i:
                out.append(
                    f"{name}/{key}: entry {i} ({e.get('t')}) has seq {e.get('s')}: two runs of "
                    "the key read the same state (a write was lost or they ran at once)"
                )
            if i and entries[i - 1]["b"] > e["a"] + CLOCK_SLACK_S:
                out.append(
                    f"{name}/{key}: {entries[i - 1]['t']} and {e['t']} overlapped "
                    f"(end {entries[i - 1]['b']:.3f} > start {e['a']:.3f}): exclusive handler "
                    "runs of one key were not one at a time"
                )


def check(ops: list[Op], final: Final) -> Report:
    report = Report(ops=len(ops))
    out = report.violations
    by_token = {op.token: op for op in ops}
    report.by_kind = {k: sum(1 for op in ops if op.kind == k) for k in KINDS}
    report.attempts = sum(len(op.attempts) for op in ops)
    report.acked = sum(1 for op in ops if op.acked is not None and not op.acked_after_heal)
    report.acked_after_heal = sum(1 for op in ops if op.acked is not None and op.acked_after_heal)
    report.never_acked = sum(1 for op in ops if op.acked is None)
    report.effects = sum(len(v) for v in final.sets.values()) + sum(
        len(v) for v in final.relays.values()
    )

    _check_lists("CheckSet", final.sets, out)
    _check_lists("CheckRelay", final.relays, out)
    in_sets, in_relays = _positions(final.sets), _positions(final.relays)

    for token in sorted(set(in_sets) | set(in_relays)):
        if token not in by_token:
            out.append(f"{token}: in the final state but never sent by a client")

    for op in ops:
        acked = op.acked is not None
        places = in_sets.get(op.token, [])
        wrong = [k for k, _ in places if k != op.key]
        if wrong:
            out.append(f"{op.token} ({op.kind}): landed in CheckSet/{wrong[0]}, not {op.key}")
        if len(places) > 1:
            out.append(f"{op.token} ({op.kind}): applied {len(places)} times (doubled)")
        elif not places and acked:
            out.append(f"{op.token} ({op.kind}): acknowledged but its effect is missing (lost)")
        entry = final.sets[places[0][0]][places[0][1]] if places else None
        pos = places[0][1] if places else None

        if op.kind in ("relay", "relay_send") and op.relay_key is not None:
            mine = in_relays.get(op.token, [])
            if len(mine) > 1:
                out.append(f"{op.token} ({op.kind}): relay ran {len(mine)} times (doubled)")
            elif not mine and acked:
                out.append(f"{op.token} ({op.kind}): acknowledged relay missing from "
                           f"CheckRelay/{op.relay_key} (lost)")
            if mine and mine[0][0] != op.relay_key:
                out.append(f"{op.token}: relay landed in CheckRelay/{mine[0][0]}")
            if mine and op.kind == "relay" and places:
                remote = final.relays[mine[0][0]][mine[0][1]].get("r")
                if remote != pos:
                    out.append(f"{op.token}: the relay's call returned seq {remote}, the token "
                               f"is at {pos} in CheckSet/{op.key}")
            if mine and op.kind == "relay_send" and entry is not None:
                sent = final.relays[mine[0][0]][mine[0][1]].get("w", 0.0)
                if entry["a"] + CLOCK_SLACK_S < sent + op.delay_ms / 1000:
                    out.append(f"{op.token}: delayed send ran {sent + op.delay_ms / 1000 - entry['a']:.3f} s "
                               "early (timer fired before its time)")

        if op.kind == "add" and acked and places and op.result != pos:
            out.append(f"{op.token}: acknowledged with seq {op.result}, but it is at {pos} in "
                       f"CheckSet/{op.key} (an acknowledged write was overwritten)")
        if op.kind == "send" and entry is not None:
            due = op.invoked + op.delay_ms / 1000
            if entry["a"] + CLOCK_SLACK_S < due:
                out.append(f"{op.token}: delayed send ran {due - entry['a']:.3f} s early "
                           "(timer fired before its time)")
        if op.kind == "flow":
            output = final.flows.get(op.token)
            if acked and output is None:
                out.append(f"{op.token}: acknowledged workflow has no output (never finished)")
            if output is not None:
                if output["woke"] + CLOCK_SLACK_S < output["slept"] + op.delay_ms / 1000:
                    out.append(f"{op.token}: workflow woke {output['slept'] + op.delay_ms / 1000 - output['woke']:.3f} s "
                               "early (timer fired before its time)")
                if places and output.get("seq") != pos:
                    out.append(f"{op.token}: workflow's add returned seq {output.get('seq')}, "
                               f"the token is at {pos}")

    # invariant 4: per key, no entry is preceded by one acknowledged only after it was sent
    for key, entries in final.sets.items():
        timed = []
        for i, e in enumerate(entries):
            op = by_token.get(str(e.get("t")))
            if op is not None and op.kind in SYNC_KINDS:
                timed.append((i, op))
        earliest_ack_after = float("inf")
        for i, op in reversed(timed):
            if earliest_ack_after < op.invoked:
                out.append(f"CheckSet/{key}: {op.token} (at {i}) comes after an operation "
                           "acknowledged before it was sent (real-time order broken)")
            if op.acked is not None:
                earliest_ack_after = min(earliest_ack_after, op.acked)

    # invariant 6: each committed ctx.run ran at least once; more often is a repetition
    committed: Counter[tuple[str, str]] = Counter()
    for lists in (final.sets, final.relays):
        for entries in lists.values():
            for e in entries:
                committed[("start", str(e["t"]))] += 1
                committed[("end", str(e["t"]))] += 1
                if "w" in e:
                    committed[("sent", str(e["t"]))] += 1
    for token, output in final.flows.items():
        if output is not None:
            committed[("slept", token)] += 1
            committed[("woke", token)] += 1
    report.run_executions = sum(final.runs.values())
    for run, n in committed.items():
        ran = final.runs.get(run, 0)
        if ran < n:
            out.append(f"{run[1]}: ctx.run {run[0]!r} committed {n} time(s) but executed {ran}")
        report.run_repetitions += max(0, ran - n)
    # executions of attempts whose journal never committed (an invocation retried from
    # scratch) are repetitions too
    report.run_repetitions += sum(n for run, n in final.runs.items() if run not in committed)
    return report
