"""Finding cycles of exclusive calls that can never finish.

An invocation *waits on* another when it awaits the result of a call to it, and an
invocation queued in a virtual object's inbox waits on the invocation holding that key.
Exclusive handlers that call each other on the same keys (A/k1 -> B/k2 -> A/k1) close a
cycle of such waits: none of them can go on until one is cancelled or killed. Restate
leaves such invocations blocked; durably does the same, and names the cycle so that an
operator can see why they hang.

The search is pure: the engine passes in how to read the wait-for edges.

Under the spread placement a cycle may cross partitions other nodes own. The engine
knows the edges of its own partitions (in memory) and sees an invocation of another
node's partition as *foreign*: what a foreign invocation waits on is read from the
database (`find_cycle_across`, with a reader the cluster room provides), one read per
hop of the search, and only when a search reaches such an invocation. Nothing is
written for it: the edges are the rows the owners commit anyway (subscriber rows, an
inboxed invocation and its key's holder), so a partition that moves leaves none behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

MAX_DEPTH = 64


def find_cycle(start: str, waits_on: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A path start -> ... -> start through the wait-for graph, or None.

    Depth-first and bounded: call chains longer than `MAX_DEPTH` are not followed.
    """
    path: list[str] = [start]
    on_path = {start}
    seen: set[str] = set()
    stack: list[Iterator[str]] = [iter(list(waits_on(start)))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            on_path.discard(path.pop())
            continue
        if nxt == start:
            return list(path)
        if nxt in on_path or nxt in seen or len(path) >= MAX_DEPTH:
            continue
        seen.add(nxt)
        path.append(nxt)
        on_path.add(nxt)
        stack.append(iter(list(waits_on(nxt))))
    return None


def describe_cycle(members: list[str], target_of: Callable[[str], str], queued: Callable[[str], bool]) -> str:
    """One line naming every invocation of the cycle and why it waits."""
    parts = []
    for i, inv_id in enumerate(members):
        nxt = members[(i + 1) % len(members)]
        how = "is queued behind" if queued(inv_id) else "awaits its call to"
        parts.append(f"{target_of(inv_id)} ({inv_id}) {how} {target_of(nxt)} ({nxt})")
    return "deadlock: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Waits:
    """What an invocation of another node's partition waits on, as the database has it."""

    target: str  # "Service/key/handler", as `Target.describe` writes it
    queued: bool  # in its key's inbox: it waits on the key's holder
    waits_on: tuple[str, ...] = ()


UNKNOWN = Waits("?", False)  # not in the database (not created yet, or purged)

ReadWaits = Callable[[set[str]], Awaitable[dict[str, Waits]]]


def find_cycle_with(
    start: str,
    waits_on: Callable[[str], Iterable[str]],
    foreign: Callable[[str], bool],
    known: dict[str, Waits],
) -> tuple[list[str] | None, set[str]]:
    """`find_cycle` where a foreign invocation's edges are `waits_on`'s (what this node
    knows of it) plus those read before (`known`); also the foreign ids reached whose
    edges were not read yet."""
    missing: set[str] = set()

    def edges(inv_id: str) -> list[str]:
        out = list(waits_on(inv_id))
        if foreign(inv_id):
            read = known.get(inv_id)
            if read is None:
                missing.add(inv_id)
            else:
                out.extend(read.waits_on)
        return out

    return find_cycle(start, edges), missing


async def find_cycle_across(
    start: str,
    waits_on: Callable[[str], Iterable[str]],
    foreign: Callable[[str], bool],
    read: ReadWaits,
) -> tuple[list[str] | None, dict[str, Waits]]:
    """A cycle through `start` whose foreign members' edges are read with `read`, a batch
    of ids at a time; also what was read (every foreign member of the cycle is: its
    target names it in the report). The last pass runs after the last read, on the
    engine's state of that moment."""
    known: dict[str, Waits] = {}
    for _ in range(MAX_DEPTH):
        cycle, missing = find_cycle_with(start, waits_on, foreign, known)
        if cycle is not None:
            missing = {m for m in cycle if foreign(m) and m not in known}
        if not missing:
            return cycle, known
        got = await read(missing)
        for inv_id in missing:
            known[inv_id] = got.get(inv_id, UNKNOWN)
    return None, known
