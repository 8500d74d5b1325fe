"""One checker run: three `durably serve --node-name` nodes on one PostgreSQL, each
reaching the database through a TCP proxy of its own that can black-hole it; client
workers sending the mixed load of `history.py` to all three nodes' ingresses; a nemesis
that every few seconds kills (-9) and restarts, pauses (SIGSTOP past twice the lease TTL,
then SIGCONT) or cuts a node off from PostgreSQL and heals it. Then: heal everything,
retry every unacknowledged operation with its idempotency key, wait until nothing is in
flight, read the final state through the admin API (SQL) and the workflow output API, and
hand it all to `history.check`.

The placement the nodes run is the serve option `--placement` when `placement` (or
`DURABLY_CHECKER_PLACEMENT`) is set; otherwise the nodes' default.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.cluster.checker.history import Attempt, Final, Op, Report, check
from tests.support.harness import DurablyServer, HarnessError, ServicesProcess, free_port, register
from tests.support.postgres import fetch, shared_cluster
from tests.support.tcp_proxy import BlackholeProxy

SERVICES_APP = "tests.cluster.checker.services:app"
NAMES = ("n1", "n2", "n3")
ACTIONS = ("kill", "pause", "cut")


@dataclass
class Settings:
    duration: float = 45.0  # seconds of load under the nemesis
    workers: int = 6
    ttl: float = 2.0  # lease TTL of the nodes
    interval: float = 3.0  # mean pause between two nemesis events
    placement: str | None = field(
        default_factory=lambda: os.environ.get("DURABLY_CHECKER_PLACEMENT") or None
    )
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    set_keys: int = 48
    relay_keys: int = 12
    op_budget: float = 20.0  # seconds a worker retries one operation under the nemesis
    heal_timeout: float = 120.0  # seconds to get every operation acknowledged after healing
    actions: tuple[str, ...] = ACTIONS  # what the nemesis does


@dataclass
class Event:
    action: str
    node: str
    start: float
    end: float = 0.0
    held_partitions: bool = False  # the node owned a partition when the event began
    note: str = ""


@dataclass
class Result:
    report: Report
    events: list[Event]
    settings: Settings
    seconds: float
    exits: list[str]  # node exits the nemesis did not cause directly (pause/cut: exit 1)

    def summary(self) -> str:
        kinds = Counter(e.action for e in self.events)
        held = sum(e.held_partitions for e in self.events)
        restarts = sum(e.note.count(" exit ") for e in self.events)
        return (
            f"placement {self.settings.placement or 'default'}, seed {self.settings.seed}, "
            f"{self.seconds:.0f} s: nemesis events {len(self.events)} "
            f"({', '.join(f'{a} {kinds[a]}' for a in ACTIONS)}; {held} on a node holding "
            f"partitions), nodes found stopped and restarted {restarts}, unexpected "
            f"node exits {len(self.exits)}; {self.report.summary()}"
        )


class CheckerCluster:
    def __init__(self, base: Path, settings: Settings) -> None:
        self.base = base
        self.s = settings
        pg = shared_cluster()
        self.dsn = pg.new_database()
        self.runlog = base / "runs.log"
        self.services = ServicesProcess(
            [], base / "services", app=SERVICES_APP, env={"CHECKER_RUNLOG": str(self.runlog)}
        )
        self.proxies: dict[str, BlackholeProxy] = {}
        self.nodes: dict[str, DurablyServer] = {}
        self.exits: list[str] = []
        self._lock = threading.Lock()  # nemesis and healing never act on a node at once
        for name in NAMES:
            proxy = BlackholeProxy(pg.port)
            self.proxies[name] = proxy
            args = ["--node-name", name, "--lease-ttl", f"{settings.ttl:g}s"]
            if settings.placement:
                args += ["--placement", settings.placement]
            self.nodes[name] = DurablyServer(
                base / name, store=self.dsn.replace(f":{pg.port}/", f":{proxy.port}/"),
                extra_args=args,
            )

    # -------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.services.start()
        for node in self.nodes.values():
            self._start(node)
        register(self.nodes[NAMES[0]].admin_url, self.services.url, use_http_11=False)

    def _start(self, node: DurablyServer) -> None:
        for attempt in range(3):
            try:
                node.start()
                return
            except HarnessError as e:
                # a port of a restarted node taken meanwhile by another test on the machine
                if "already in use" not in str(e) or attempt == 2:
                    raise
                node.kill()
                node.ingress_port, node.admin_port = free_port(), free_port()

    def close(self) -> None:
        for name, node in self.nodes.items():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
            node.kill()
            self.proxies[name].close()
        self.services.close()

    def revive(self) -> list[str]:
        """Start again every node that exited; returns what it found."""
        found = []
        for name, node in self.nodes.items():
            if node.proc is not None and node.proc.poll() is not None:
                code = node.proc.returncode
                found.append(f"{name} exit {code}")
                node.kill()  # closes its log, reaps what is left of its group
                for attempt in range(3):
                    try:
                        self._start(node)
                        break
                    except HarnessError:
                        # it may lose the leases it just took on a starved machine (exit 1,
                        # by design) before it answers: start it once more
                        node.kill()
                        if attempt == 2:
                            raise
        return found

    def holders(self) -> list[str]:
        rows = fetch(self.dsn, "SELECT DISTINCT owner FROM durably.partition_lease "
                               "WHERE owner <> '' AND expires_at >= now()")
        return sorted(r[0] for r in rows)

    # -------------------------------------------------------------------------- nemesis

    def nemesis(self, stop: threading.Event, rng: random.Random, events: list[Event]) -> None:
        """Until `stop`: wait, then one event; every action comes once per shuffled round.
        The target is a node holding partitions two times out of three (the leader, in
        leader placement), else any node."""
        todo: list[str] = []
        while not stop.wait(rng.uniform(0.5, 1.5) * self.s.interval):
            if not todo:
                todo = list(self.s.actions)
                rng.shuffle(todo)
            action = todo.pop()
            try:
                holders = self.holders()
            except Exception:
                holders = []
            name = rng.choice(holders) if holders and rng.random() < 2 / 3 else rng.choice(NAMES)
            event = Event(action, name, time.time(), held_partitions=name in holders)
            with self._lock:
                try:
                    getattr(self, f"_{action}")(name, rng)
                except Exception as e:  # recorded; the run goes on
                    event.note = f"error: {type(e).__name__}: {e}"
                event.end = time.time()
                events.append(event)
                try:
                    exited = self.revive()
                except Exception as e:
                    exited = [f"revive failed: {e}"]
                self._note_exits(event, exited)

    def _note_exits(self, event: Event | None, exited: list[str]) -> None:
        # kill -9 is ours; a node that lost its leases (paused, cut off, or starved of CPU
        # past its TTL) stops with 1 by design; anything else is worth a look
        unexpected = [x for x in exited if not x.endswith((" exit 1", " exit -9"))]
        if event is not None and exited:
            event.note = (event.note + " " if event.note else "") + "restarted: " + ", ".join(exited)
        self.exits.extend(unexpected)

    def _kill(self, name: str, rng: random.Random) -> None:
        node = self.nodes[name]
        node.kill()
        time.sleep(rng.uniform(0.2, 1.0))
        self._start(node)

    def _pause(self, name: str, rng: random.Random) -> None:
        proc = self.nodes[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(2 * self.s.ttl + rng.uniform(0.2, 1.0))
        finally:
            proc.send_signal(signal.SIGCONT)
        self._settle(name)

    def _cut(self, name: str, rng: random.Random) -> None:
        proxy = self.proxies[name]
        proxy.blackhole()
        try:
            time.sleep(2 * self.s.ttl + rng.uniform(0.2, 1.0))
        finally:
            proxy.heal()
        self._settle(name)

    def _settle(self, name: str) -> None:
        """A node that held leases finds them gone and exits shortly after it runs again:
        give it a renewal round to do so, so that it is restarted with this event."""
        proc = self.nodes[name].proc
        assert proc is not None
        try:
            proc.wait(self.s.ttl)
        except Exception:
            pass

    def heal(self) -> list[str]:
        with self._lock:
            for name, proxy in self.proxies.items():
                proxy.heal()
                proc = self.nodes[name].proc
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
            time.sleep(self.s.ttl)
            exited = self.revive()
            for attempt in range(3):
                try:
                    for name, node in self.nodes.items():
                        try:
                            node.wait_healthy(120)
                        except HarnessError:
                            if node.proc is not None and node.proc.poll() is None:
                                self.diagnose(name)  # up but not answering: keep the evidence
                            raise
                    return exited
                except HarnessError:
                    # a node revived on a starved machine may lose the leases it just took
                    # before it answers (exit 1, by design): start it once more
                    again = self.revive()
                    if not again or attempt == 2:
                        raise
                    exited += again
            return exited

    def diagnose(self, name: str) -> Path:
        """A node that is up but does not answer: write what it is doing (py-spy's dump of
        its threads), what its database sessions are doing (pg_stat_activity) and the
        leases, next to its log, before the run tears everything down."""
        out = self.base / f"stuck-{name}-{int(time.time())}.txt"
        node = self.nodes[name]
        parts = [f"node {name} pid {node.proc.pid if node.proc else None}, log {node.log_path}"]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGUSR1)  # the node logs its tasks' stacks
            for args in (["py-spy", "dump", "--pid", str(node.proc.pid)],
                         ["py-spy", "dump", "--locals", "--pid", str(node.proc.pid)]):
                try:
                    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
                    parts.append(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
                except (OSError, subprocess.SubprocessError) as e:
                    parts.append(f"$ {' '.join(args)}: {e}")
        for sql in ("SELECT pid, application_name, client_addr, client_port, backend_start, "
                    "xact_start, query_start, state_change, wait_event_type, wait_event, state, "
                    "left(query, 300) FROM pg_stat_activity WHERE datname = current_database()",
                    "SELECT * FROM durably.partition_lease ORDER BY 1",
                    "SELECT now()"):
            try:
                rows = fetch(self.dsn, sql)
                parts.append(f"> {sql}\n" + "\n".join(repr(r) for r in rows))
            except Exception as e:
                parts.append(f"> {sql}: {type(e).__name__}: {e}")
        parts.append(f"proxy of {name}: {vars(self.proxies[name])!r}")
        out.write_text("\n\n".join(parts), encoding="utf-8")
        return out

    def diagnose_all(self) -> None:
        for name, node in self.nodes.items():
            if node.proc is not None and node.proc.poll() is None:
                self.diagnose(name)

    # -------------------------------------------------------------------------- reading

    def query(self, client: httpx.Client, sql: str) -> list[dict[str, Any]]:
        for name in NAMES:  # any node answers for the cluster
            try:
                r = client.post(f"{self.nodes[name].admin_url}/query", json={"query": sql},
                                headers={"accept": "application/json"})
                if r.status_code == 200:
                    return list(r.json()["rows"])
            except httpx.HTTPError:
                pass
        raise RuntimeError(f"no node answered {sql!r}")

    def final(self, ops: list[Op]) -> Final:
        with httpx.Client(timeout=30) as client:
            rows = self.query(
                client, "SELECT service_name, service_key, value_utf8 FROM state "
                        "WHERE key = 'entries'",
            )
            sets: dict[str, list[dict[str, Any]]] = {}
            relays: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                target = sets if row["service_name"] == "CheckSet" else relays
                target[row["service_key"]] = json.loads(row["value_utf8"])
            flows: dict[str, dict[str, Any] | None] = {}
            for op in ops:
                if op.kind == "flow":
                    flows[op.token] = self._flow_output(client, op.token)
        runs: Counter[tuple[str, str]] = Counter()
        if self.runlog.exists():
            for line in self.runlog.read_text(encoding="utf-8").splitlines():
                name, _, token = line.partition("\t")
                runs[(name, token)] += 1
        return Final(sets=sets, relays=relays, flows=flows, runs=runs)

    def _flow_output(self, client: httpx.Client, wid: str) -> dict[str, Any] | None:
        answers = []
        for name in NAMES:
            try:
                r = client.get(
                    f"{self.nodes[name].ingress_url}/restate/workflow/CheckFlow/{wid}/output"
                )
            except httpx.HTTPError as e:
                answers.append(f"{name}: {type(e).__name__}")
                continue
            if r.status_code == 200:
                return dict(r.json())
            if r.status_code in (404, 470):  # unknown or not finished
                return None
            answers.append(f"{name}: {r.status_code} {r.text[:200]}")
        raise RuntimeError(f"no node answered the output of workflow {wid}: {answers}")

    def unfinished(self) -> list[dict[str, Any]]:
        """Invocations not completed at the end (for the history: what a hang looks like)."""
        with httpx.Client(timeout=30) as client:
            return self.query(
                client, "SELECT id, target, status, idempotency_key, created_at, modified_at, "
                        "scheduled_start_at, retry_count, last_failure FROM sys_invocation "
                        "WHERE status <> 'completed' ORDER BY created_at LIMIT 500",
            )

    def wait_quiet(self, ops: list[Op], timeout: float) -> None:
        """Until no invocation is unfinished and every acknowledged workflow has output."""
        deadline = time.monotonic() + timeout
        flows = [op.token for op in ops if op.kind == "flow" and op.acked is not None]
        with httpx.Client(timeout=30) as client:
            while True:
                try:
                    rows = self.query(client, "SELECT count(*) AS n FROM sys_invocation "
                                              "WHERE status <> 'completed'")
                    busy = int(rows[0]["n"])
                except RuntimeError:
                    busy = -1
                if busy == 0:
                    flows = [f for f in flows if self._flow_output(client, f) is None]
                    if not flows:
                        return
                if time.monotonic() > deadline:
                    return  # the check reports what is missing
                time.sleep(0.5)


# ------------------------------------------------------------------------------ clients


class Load:
    def __init__(self, cluster: CheckerCluster, settings: Settings) -> None:
        self.cluster = cluster
        self.s = settings
        self.ops: list[Op] = []

    def new_op(self, worker: int, n: int, rng: random.Random) -> Op:
        token = f"w{worker}-{n}"
        key = f"s{rng.randrange(self.s.set_keys)}"
        kind = rng.choices(
            ["add", "send", "relay", "relay_send", "flow"], weights=[45, 15, 15, 10, 15]
        )[0]
        op = Op(token=token, kind=kind, key=key)
        if kind in ("relay", "relay_send"):
            op.relay_key = f"r{rng.randrange(self.s.relay_keys)}"
        if kind in ("send", "relay_send", "flow"):
            op.delay_ms = rng.randrange(300, 3000)
        return op

    def request(self, op: Op, ingress: str) -> tuple[str, str, bytes, dict[str, str], set[int]]:
        idem = {"idempotency-key": op.token, "content-type": "application/json"}
        if op.kind == "add":
            return "POST", f"{ingress}/CheckSet/{op.key}/add", json.dumps(op.token).encode(), \
                idem, {200}
        if op.kind == "send":
            return ("POST", f"{ingress}/CheckSet/{op.key}/add/send?delay={op.delay_ms}ms",
                    json.dumps(op.token).encode(), idem, {200, 202})
        if op.kind in ("relay", "relay_send"):
            body = {"target": op.key, "token": op.token, "delay_ms": op.delay_ms}
            return ("POST", f"{ingress}/CheckRelay/{op.relay_key}/forward",
                    json.dumps(body).encode(), idem, {200})
        body = {"key": op.key, "token": op.token, "ms": op.delay_ms}
        return ("POST", f"{ingress}/CheckFlow/{op.token}/run/send", json.dumps(body).encode(),
                {"content-type": "application/json"}, {200, 202})

    async def perform(
        self, client: httpx.AsyncClient, op: Op, rng: random.Random, until: float,
        after_heal: bool = False,
    ) -> None:
        """Send `op` to one node after the other until one acknowledges it (or `until`)."""
        k = rng.randrange(len(NAMES))
        while op.acked is None and time.time() < until:
            name = NAMES[k % len(NAMES)]
            k += 1
            method, url, body, headers, ok = self.request(op, self.cluster.nodes[name].ingress_url)
            t0 = time.time()
            if not op.attempts:
                op.invoked = t0
            result: Any = None
            try:
                r = await client.request(method, url, content=body, headers=headers)
                outcome = "ok" if r.status_code in ok else str(r.status_code)
                if outcome == "ok":
                    result = r.json()
            except (httpx.HTTPError, ValueError) as e:
                outcome = type(e).__name__
            t1 = time.time()
            op.attempts.append(Attempt(name, t0, t1, outcome))
            if outcome == "ok":
                op.acked, op.acked_after_heal, op.result = t1, after_heal, result
                return
            await asyncio.sleep(rng.uniform(0.05, 0.3))

    async def run(self, stop_at: float, rng: random.Random, events: list[Event]) -> None:
        # on a slow machine a round of the nemesis may take longer than the load: go on
        # until every action happened once (at most three times as long)
        cap = time.time() + 3 * (stop_at - time.time())

        def going() -> bool:
            now = time.time()
            return now < stop_at or (len(events) < len(self.s.actions) and now < cap)

        async def worker(i: int) -> None:
            wrng = random.Random(rng.random())
            n = 0
            while going():
                op = self.new_op(i, n, wrng)
                n += 1
                self.ops.append(op)
                await self.perform(client, op, wrng, time.time() + self.s.op_budget)

        async with _client() as client:
            await asyncio.gather(*(worker(i) for i in range(self.s.workers)))

    async def retry_unacknowledged(self, rng: random.Random) -> None:
        until = time.time() + self.s.heal_timeout
        gate = asyncio.Semaphore(8)

        async def one(op: Op) -> None:
            async with gate:
                await self.perform(client, op, random.Random(rng.random()), until, True)

        async with _client() as client:
            await asyncio.gather(*(one(op) for op in self.ops if op.acked is None))


def _client() -> httpx.AsyncClient:
    # a paused node holds a request until it runs again: give up on it and try another
    return httpx.AsyncClient(timeout=httpx.Timeout(8.0, connect=2.0),
                             limits=httpx.Limits(max_connections=64))


# ------------------------------------------------------------------------------ one run


def run(base: Path, settings: Settings, history: Path | None = None) -> Result:
    base.mkdir(parents=True, exist_ok=True)
    rng = random.Random(settings.seed)
    started = time.time()
    cluster = CheckerCluster(base, settings)
    events: list[Event] = []
    try:
        cluster.start()
        load = Load(cluster, settings)
        stop = threading.Event()
        nemesis = threading.Thread(
            target=cluster.nemesis, args=(stop, random.Random(rng.random()), events), daemon=True
        )
        nemesis.start()
        try:
            asyncio.run(load.run(time.time() + settings.duration, rng, events))
        finally:
            stop.set()
            nemesis.join()
        cluster._note_exits(None, cluster.heal())
        try:
            asyncio.run(load.retry_unacknowledged(rng))
            cluster.wait_quiet(load.ops, settings.heal_timeout)
            final = cluster.final(load.ops)
            report = check(load.ops, final)
            unfinished = cluster.unfinished()
        except Exception:
            cluster.diagnose_all()
            raise
        if report.violations or unfinished:
            cluster.diagnose_all()
        result = Result(report, events, settings, time.time() - started, cluster.exits)
        if history is not None:
            history.write_text(json.dumps({
                "settings": asdict(settings),
                "summary": result.summary(),
                "report": report.as_dict(),
                "events": [asdict(e) for e in events],
                "exits": cluster.exits,
                "unfinished": unfinished,
                "ops": [asdict(op) for op in load.ops],
                "final": {"sets": final.sets, "relays": final.relays, "flows": final.flows,
                          "runs": [[n, t, c] for (n, t), c in sorted(final.runs.items())]},
            }, indent=1))
        return result
    finally:
        cluster.close()
