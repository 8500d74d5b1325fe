"""RunRetry: the retry policy of ctx.run (attempts counted across retries).

The Failing counters are process globals that never reset, hence ``>=``."""

from __future__ import annotations

from tests.support.harness import Env

SERVICES = ["Failing"]


def test_with_success(env: Env) -> None:
    out = env.call_json("Failing", "sideEffectSucceedsAfterGivenAttempts", 3, key=env.new_key())
    assert isinstance(out, int) and out >= 3


def test_executed_only_once(env: Env) -> None:
    out = env.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 1, key=env.new_key())
    assert isinstance(out, int) and out >= 1
    # max_attempts=1: exactly one more execution of the run body
    again = env.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 1, key=env.new_key())
    assert again == out + 1


def test_with_exhausted_attempts(env: Env) -> None:
    out = env.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 3, key=env.new_key())
    assert isinstance(out, int) and out >= 3
    # max_attempts=3: the run body executes exactly 3 more times, then the terminal error
    again = env.call_json("Failing", "sideEffectFailsAfterGivenAttempts", 3, key=env.new_key())
    assert again == out + 3
