"""A node's lease keeper: joins the membership, holds its share of the partitions, renews
them, notices when it lost one, and hands everything back on a clean stop.

Every `ttl/3` seconds it stamps its heartbeat, renews all its leases and reads the live
nodes and the owners of every partition, all in one statement (`leases.renew_round`: one
round trip and one transaction per node per round), then compares what it holds with its
even share of the live nodes (`placement.share_of`):
below it takes free or expired partitions, above it gives back those `can_release`
allows (a partition still busy on this node stays until it is idle).

Two clocks, each used for what it can decide:
- the database's clock decides expiry (`leases`), so another node takes a partition only
  when PostgreSQL says the lease ran out;
- this process's monotonic clock decides when to stop trusting its own leases: a renewal
  sent at `t` and answered is valid until `t + ttl - margin` locally, which ends before the
  database's expiry (`now()` at the renewal is after `t`). Past that, with no answered
  renewal (the database is unreachable, or this process was paused), the keeper drops every
  partition itself. The fence in every commit is what makes this safe, the self-fence only
  stops work that could not commit anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from durably.cluster import leases
from durably.cluster.fence import Fence
from durably.cluster.placement import DEFAULT_PARTITIONS, preferred, share_of
from durably.cluster.schema import migrate

log = logging.getLogger("durably.cluster")

DEFAULT_TTL_S = 6.0


class LeaseKeeper:
    def __init__(
        self,
        dsn: str,
        membership: leases.Membership,
        *,
        num_partitions: int = DEFAULT_PARTITIONS,
        ttl_s: float = DEFAULT_TTL_S,
        on_acquired: Callable[[dict[int, int]], None] | None = None,
        on_lost: Callable[[set[int]], None] | None = None,
        can_release: Callable[[int], bool] | None = None,
        spread: bool = True,
        before_release: Callable[[set[int]], Awaitable[None]] | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease TTL must be positive")
        self.dsn = dsn
        self.membership = membership
        self.node = membership.name
        self.num_partitions = num_partitions
        self.ttl_s = ttl_s
        self.interval_s = ttl_s / 3
        # local trust ends this much before the database's expiry at the earliest
        self.margin_s = min(1.0, ttl_s / 6)
        self.fence = Fence(self.node, num_partitions)
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.can_release = can_release
        # True: even shares over the live nodes; False: one leader takes every partition at
        # once and the others stand by (what `durably serve --node-name` runs today)
        self.spread = spread
        # spread placement: hands partitions over (stops their work, commits) before their
        # leases are released
        self.before_release = before_release
        # pid -> owner of every unexpired lease, as of the last round (spread placement)
        self.owners: dict[int, str] = {}
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._valid_until = 0.0
        self.live: list[str] = []
        self.nodes: dict[str, leases.NodeInfo] = {}
        self.leader: str | None = None
        # set by `retire`: the node is stopping and must never hold a lease again
        self.retired = False
        self._left = False  # a retired keeper left the membership

    @property
    def held(self) -> dict[int, int]:
        """pid -> epoch of the partitions this node holds (the fence's view)."""
        return self.fence.epochs

    async def _connect(self, timeout: float) -> Any:
        import asyncpg

        return await asyncpg.connect(
            self.dsn,
            timeout=timeout,
            server_settings={
                "application_name": f"durably-lease-{self.node}",
                # a keeper cut off mid-transaction must not hold lease rows locked
                "idle_in_transaction_session_timeout": str(int(self.ttl_s * 1000)),
            },
        )

    async def start(self) -> None:
        """Create the cluster tables if needed, join (waiting out a previous incarnation of
        this name that may still be alive), take a first share, then keep it."""
        conn = self._conn = await self._connect(10.0)
        self.num_partitions = await migrate(conn, self.num_partitions)
        while True:
            wait = await self.membership.join(conn, self.ttl_s)
            if wait == 0.0:
                break
            log.warning(
                "node name %r is in use by a live process; waiting %.1f s for its heartbeat "
                "to expire", self.node, wait,
            )
            await asyncio.sleep(wait)
        await self.tick()
        self._task = asyncio.create_task(self._run(), name=f"durably-leases-{self.node}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"durably-fence-{self.node}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                # a slow round is fine as long as renewals are answered in time (_watch)
                async with asyncio.timeout(self.ttl_s):  # (cancellable: not wait_for)
                    await self.tick()
            except Exception as e:  # TimeoutError included
                log.warning("lease renewal failed: %s", str(e).splitlines()[0] if str(e) else e)
                old, self._conn = self._conn, None
                if old is not None:
                    old.terminate()

    async def _watch(self) -> None:
        """The self-fence: drop every lease once no renewal was answered in time.

        It sleeps until the current deadline (one wake-up per renewal round while renewals
        are answered, rather than a poll), then looks again: a renewal answered meanwhile
        moved the deadline on."""
        while True:
            left = self._valid_until - time.monotonic()
            await asyncio.sleep(left if left > 0 else min(0.5, self.ttl_s / 20))
            if self.held and time.monotonic() > self._valid_until:
                log.error(
                    "no lease renewal answered for %.1f s: dropping partitions %s",
                    self.ttl_s - self.margin_s, sorted(self.held),
                )
                self._lose(set(self.held))

    async def tick(self) -> None:
        """One round: heartbeat, renew, then move towards this node's share."""
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await self._connect(self.ttl_s)
        sent = time.monotonic()
        # heartbeat, renewals, live nodes and owners: one statement (one round trip and one
        # transaction per node per round, whatever the number of partitions held)
        asked = dict(self.held)
        got_round = await leases.renew_round(conn, self.membership, asked, self.ttl_s)
        if not got_round.beat:
            self._lose(set(self.held))
            raise leases.LeaseError(f"another process took over the node name {self.node!r}")
        self._valid_until = sent + self.ttl_s - self.margin_s
        lost = set(asked) - got_round.renewed
        if lost:
            log.error("leases of partitions %s were taken over", sorted(lost))
            self._lose(lost)
        if self.retired and not self._left:
            # no longer a member the others share the partitions with: counted as live, a
            # stopping node that takes nothing would keep its share unowned for as long as
            # its shutdown lasts
            await self.membership.leave(conn)
            self._left = True
        self.nodes = {n.name: n for n in got_round.nodes}
        self.live = list(self.nodes)
        self.owners = got_round.owners
        if self.retired:
            return
        if not self.spread:
            if not self.held:
                got = await leases.acquire_all(conn, self.node, self.ttl_s)
                if got:
                    self.held.update(got)
                    log.info("took all %d partitions: this node leads", len(got))
                    if self.on_acquired is not None:
                        self.on_acquired(got)
            self.leader = self.node if self.held else self.owners.get(0)
            return
        share = share_of(self.node, self.live, self.num_partitions)
        order = preferred(self.node, self.live, self.num_partitions)
        moved = False
        if len(self.held) < share:
            wanted = [p for p in order if p not in self.held]
            got = await leases.acquire(conn, self.node, wanted, self.ttl_s, share - len(self.held))
            if got:
                moved = True
                self.held.update(got)
                log.info("acquired partitions %s", sorted(got))
                if self.on_acquired is not None:
                    self.on_acquired(got)
        elif len(self.held) > share:
            # give back the partitions least preferred first
            excess = [p for p in reversed(order) if p in self.held]
            chosen = [
                p for p in excess if self.can_release is None or self.can_release(p)
            ][: len(self.held) - share]
            if chosen:
                moved = True
                if self.before_release is not None:
                    await self.before_release(set(chosen))
                await self._release({p: self.held[p] for p in chosen}, conn)
        if moved:  # (a steady round reads nothing more)
            self.owners = await owners(conn)

    async def _release(self, which: dict[int, int], conn: Any) -> None:
        # drop locally first: a commit after this must not pass the fence with these epochs
        for pid in which:
            self.held.pop(pid, None)
        await leases.release(conn, self.node, which)
        log.info("released partitions %s", sorted(which))

    def retire(self) -> None:
        """Take no partition from now on (renewals and the heartbeat go on until `stop`).

        For a node that stops because it lost its leases: its engine's memory is stale, and
        until the process is gone it may still have batches to commit. Had it taken the
        leases again meanwhile (they expire while it shuts down), those batches would pass
        the fence with the new epochs and overwrite what the next owner committed."""
        self.retired = True

    def _lose(self, pids: set[int]) -> None:
        for pid in pids:
            self.held.pop(pid, None)
        if pids and self.on_lost is not None:
            self.on_lost(pids)

    async def stop(self, release: bool = True) -> None:
        """Stop renewing; with `release`, hand every partition back at once and leave the
        membership (call it after the store committed its last batch)."""
        for task in (self._task, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        conn = self._conn
        self._conn = None
        if conn is None:
            return
        try:
            if release:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._release(dict(self.held), conn), 5)
                    await asyncio.wait_for(self.membership.leave(conn), 5)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


async def owners(conn: Any) -> dict[int, str]:
    """pid -> owner of every partition whose lease has not expired."""
    rows = await conn.fetch(
        "SELECT pid, owner FROM durably.partition_lease WHERE owner <> '' AND expires_at >= now()"
    )
    return {r[0]: r[1] for r in rows}
