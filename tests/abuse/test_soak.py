"""A 60-second soak (``bench/soak.py`` runs the 10-minute one): mixed load (calls, delayed
sends, sleeps, workflows with attach, cancels, kills, reads) at a steady, moderate rate.

No operation may fail, and the server's resources must level off once the retention window
(10 s) is full: after the warm-up, RSS, open file descriptors and the store's size stay
within generous bounds (a leak of a few KiB per operation would cross them). Latency is
sampled and reported, never asserted (the machine is shared).
"""

from __future__ import annotations

import os

import pytest
from bench.soak import prepare, soak, summary
from tests.support.harness import Env

pytestmark = [pytest.mark.timeout(300)]

DURATION_S = float(os.environ.get("DURABLY_SOAK_SECONDS", "60"))
RATE = float(os.environ.get("DURABLY_SOAK_RATE", "25"))


def test_soak(fault_env, tmp_path) -> None:
    env: Env = fault_env(services_env={"EFFECTS_FILE": str(tmp_path / "fx")},
                         server_options={"cleanup_interval": "1s"})
    prepare(env)
    result = soak(env, DURATION_S, RATE)
    stats = summary(result)
    print(stats)
    assert not result.errors, result.errors[:10]
    assert result.ops > DURATION_S * RATE * 0.5, f"too little load: {stats}"
    after = result.samples[len(result.samples) // 3:]  # once the retention window is full
    half = len(after) // 2
    first, second = after[:half], after[half:]
    rss_growth = max(s.rss_mib for s in second) - max(s.rss_mib for s in first)
    assert rss_growth < 25, f"RSS grew by {rss_growth:.1f} MiB: {stats}"
    fds = [s.fds for s in after]
    assert max(fds) - min(fds) < 40, f"open fds went from {min(fds)} to {max(fds)}: {stats}"
    store_growth = max(s.store_mib for s in second) - max(s.store_mib for s in first)
    assert store_growth < max(2.0, 0.5 * max(s.store_mib for s in first)), (
        f"the store grew by {store_growth:.2f} MiB: {stats}")
