"""Seeded random programs for ``interpreter.py`` and their expected outcome, computed here
without durably (a plain recursive evaluation of the same program).

``generate(seed)`` always gives the same programs for the same seed. Calls only go to keys
of a higher index than the caller's (so two exclusive handlers never wait for each other);
sends go anywhere.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KEYS = [f"k{i}" for i in range(6)]


@dataclass
class Workload:
    seed: int
    # (key, program) submitted from outside, in order
    programs: list[tuple[str, list[Any]]] = field(default_factory=list)


def _program(rng: random.Random, key_index: int, depth: int) -> list[Any]:
    ops: list[Any] = []
    for _ in range(rng.randint(1, 5)):
        roll = rng.random()
        if roll < 0.25:
            ops.append(["inc", rng.randint(1, 9)])
        elif roll < 0.45:
            ops.append(["run", rng.randint(1, 99)])
        elif roll < 0.55:
            ops.append(["sleep", rng.choice([10, 50, 200])])
        elif roll < 0.7 and depth < 2 and key_index + 1 < len(KEYS):
            callee = rng.randrange(key_index + 1, len(KEYS))
            ops.append(["call", KEYS[callee], _program(rng, callee, depth + 1)])
        elif roll < 0.82 and depth < 2:
            target = rng.randrange(len(KEYS))
            ops.append(["send", KEYS[target], _program(rng, target, depth + 1),
                        rng.choice([0, 0, 100, 500])])
        elif roll < 0.88 and depth < 2:
            target = rng.randrange(len(KEYS))
            ops.append(["cancelled_send", KEYS[target], _program(rng, target, depth + 1)])
        else:
            ops.append(["awakeable", rng.randint(1, 99)])
    return ops


def generate(seed: int, count: int) -> Workload:
    rng = random.Random(seed)
    w = Workload(seed)
    for _ in range(count):
        i = rng.randrange(len(KEYS))
        w.programs.append((KEYS[i], _program(rng, i, 0)))
    return w


def evaluate(key: str, program: list[Any], counters: Counter[str]) -> int:
    """The program's result; adds every increment it (and what it starts) makes to
    ``counters``. Sends are counted as if they ran at once: the counters are compared only
    after everything has finished, and addition does not care about order."""
    result = 0
    for op in program:
        kind = op[0]
        if kind == "inc":
            counters[key] += op[1]
        elif kind in ("run", "awakeable"):
            result += op[1]
        elif kind == "call":
            result += evaluate(op[1], op[2], counters)
        elif kind == "send":
            evaluate(op[1], op[2], counters)
    return result


def expected(w: Workload) -> tuple[list[int], Counter[str]]:
    counters: Counter[str] = Counter()
    results = [evaluate(key, program, counters) for key, program in w.programs]
    return results, counters
