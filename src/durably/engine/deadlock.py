"""Finding cycles of exclusive calls that can never finish.

An invocation *waits on* another when it awaits the result of a call to it, and an
invocation queued in a virtual object's inbox waits on the invocation holding that key.
Exclusive handlers that call each other on the same keys (A/k1 -> B/k2 -> A/k1) close a
cycle of such waits: none of them can go on until one is cancelled or killed. Restate
leaves such invocations blocked; durably does the same, and names the cycle so that an
operator can see why they hang.

The search is pure: the engine passes in how to read the wait-for edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

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
