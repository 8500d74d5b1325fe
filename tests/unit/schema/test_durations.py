from datetime import timedelta

import pytest

from durably.schema.durations import (
    DurationError,
    format_duration,
    format_duration_iso,
    parse_duration,
    parse_duration_ms,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("0s", 0),
        ("10s", 10_000),
        ("1500ms", 1_500),
        ("5 min", 300_000),
        ("60 sec", 60_000),
        ("1h 30m", 5_400_000),
        ("1h30m", 5_400_000),
        ("2 hours, 30 minutes", 9_000_000),
        ("1 hr 2 mins", 3_720_000),
        ("10 seconds", 10_000),
        ("3 millis", 3),
        ("1.5h", 5_400_000),
        ("1.5s", 1_500),
        ("1 day 2.5 hours", 95_400_000),
        ("1w", 604_800_000),
        ("1 week 2 days", 777_600_000),
        ("400d", 34_560_000_000),
        ("+5s", 5_000),
        ("1:02:03", 3_723_000),
        ("PT2S", 2_000),
        ("PT0.5S", 500),
        ("PT1.5S", 1_500),
        ("PT1H30M", 5_400_000),
        ("P1D", 86_400_000),
        ("P1W", 604_800_000),
        ("p1dt2h", 93_600_000),
    ],
)
def test_parse(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_parse_sub_millisecond() -> None:
    assert parse_duration("2h 3m 4s 5ms 6us") == timedelta(
        hours=2, minutes=3, seconds=4, milliseconds=5, microseconds=6
    )
    assert parse_duration_ms("6us") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "an empty string is not a valid duration"),
        ("abc", "expected duration to start with a unit value"),
        (" 5s", "expected duration to start with a unit value"),
        ("5", "expected to find unit designator suffix"),
        ("1H", "expected to find unit designator suffix"),
        ("1 month", "please use units of days or smaller"),
        ("1y", "please use units of days or smaller"),
        ("P1M", "please use units of days or smaller"),
        ("P1Y", "please use units of days or smaller"),
        ("-1s", "negative signed durations cannot be converted"),
        ("1 day ago", "negative signed durations cannot be converted"),
        ("1.5h 3m", 'unparsed input "3m" remains'),
        ("1m 1h", "units must be written from largest to smallest"),
        ("P1DT", "did not find any time units"),
        ("Pfoo", "ISO 8601"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(DurationError) as e:
        parse_duration(text)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0s"),
        (500, "500ms"),
        (1_500, "1s 500ms"),
        (90_000, "1m 30s"),
        (60_000, "1m"),
        (600_000, "10m"),
        (7_200_000, "2h"),
        (86_400_000, "1d"),
        (129_600_000, "1d 12h"),
        (604_800_000, "7d"),
        (timedelta(hours=2, microseconds=6), "2h 6µs"),
    ],
)
def test_format(value: int | timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_round_trips() -> None:
    for ms in (0, 1, 999, 1_000, 61_001, 3_600_000, 90_061_001):
        assert parse_duration_ms(format_duration(ms)) == ms


def test_iso() -> None:
    assert format_duration_iso(86_400_000) == "PT86400S"
    assert format_duration_iso(1_500) == "PT1.5S"
