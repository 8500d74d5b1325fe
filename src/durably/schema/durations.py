"""Durations as Restate writes and reads them.

Restate (through the `jiff` crate) accepts two spellings wherever a duration is configured:
the "friendly" form (`10s`, `1500ms`, `5 min`, `1h 30m`, `2 hours, 30 minutes`, `1.5h`) and
ISO 8601 (`PT2S`, `P1D`, `P1W`, case-insensitive). It prints the compact friendly form
(`1d 12h`, `1m 30s`, `0s`). Calendar units (months, years) and negative values are refused,
because a retention or a delay has to be a fixed length of time.

This module is used for the admin API's PATCH bodies and for the ingress `?delay=`; its error
messages follow jiff's wording so that what a user sees matches Restate.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = [
    "DurationError",
    "format_duration",
    "format_duration_iso",
    "parse_duration",
    "parse_duration_ms",
]

_NS_PER_US = 1_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_NS_PER_MIN = 60 * _NS_PER_S
_NS_PER_H = 60 * _NS_PER_MIN
_NS_PER_D = 24 * _NS_PER_H
_NS_PER_W = 7 * _NS_PER_D

# Unit rank (larger = bigger unit) and size in ns; months and years have no fixed size.
_YEAR, _MONTH, _WEEK, _DAY, _HOUR, _MIN, _SEC, _MS, _US, _NS = range(10, 0, -1)
_UNIT_NS = {
    _WEEK: _NS_PER_W,
    _DAY: _NS_PER_D,
    _HOUR: _NS_PER_H,
    _MIN: _NS_PER_MIN,
    _SEC: _NS_PER_S,
    _MS: _NS_PER_MS,
    _US: _NS_PER_US,
    _NS: 1,
}

_DESIGNATORS: dict[str, int] = {}
for _rank, _names in (
    (_YEAR, "years year yrs yr y"),
    (_MONTH, "months month mos mo"),
    (_WEEK, "weeks week wks wk w"),
    (_DAY, "days day d"),
    (_HOUR, "hours hour hrs hr h"),
    (_MIN, "minutes minute mins min m"),
    (_SEC, "seconds second secs sec s"),
    (_MS, "milliseconds millisecond millis milli msecs msec ms"),
    (_US, "microseconds microsecond micros micro usecs usec µsecs µsec us µs"),
    (_NS, "nanoseconds nanosecond nanos nano nsecs nsec ns"),
):
    for _name in _names.split():
        _DESIGNATORS[_name] = _rank
# Longest first, so that `ms` wins over `m` and `mins` over `min`.
_DESIGNATOR_RE = re.compile(
    "(" + "|".join(sorted(map(re.escape, _DESIGNATORS), key=len, reverse=True)) + ")(?![a-zA-Zµ])"
)
_NUMBER_RE = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?")
_HMS_RE = re.compile(r"([+-]?)([0-9]+):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?\Z")
_ISO_RE = re.compile(
    r"([+-]?)P"
    r"(?:(?P<Y>[0-9]+(?:[.,][0-9]+)?)Y)?"
    r"(?:(?P<M>[0-9]+(?:[.,][0-9]+)?)M)?"
    r"(?:(?P<W>[0-9]+(?:[.,][0-9]+)?)W)?"
    r"(?:(?P<D>[0-9]+(?:[.,][0-9]+)?)D)?"
    r"(?P<T>T"
    r"(?:(?P<h>[0-9]+(?:[.,][0-9]+)?)H)?"
    r"(?:(?P<m>[0-9]+(?:[.,][0-9]+)?)M)?"
    r"(?:(?P<s>[0-9]+(?:[.,][0-9]+)?)S)?"
    r")?\Z",
    re.IGNORECASE,
)

_FRIENDLY = 'failed to parse input in the "friendly" duration format: '
_NO_CALENDAR = "please use units of days or smaller"
_NEGATIVE = "negative signed durations cannot be converted to an unsigned duration"


class DurationError(ValueError):
    """A duration string that Restate would refuse; the message follows jiff's wording."""


def parse_duration(text: str) -> timedelta:
    """Parse a friendly or ISO 8601 duration into a non-negative timedelta (µs precision)."""
    return timedelta(microseconds=_parse_ns(text) // _NS_PER_US)


def parse_duration_ms(text: str) -> int:
    """Parse a friendly or ISO 8601 duration into whole milliseconds (rounded down)."""
    return _parse_ns(text) // _NS_PER_MS


def _parse_ns(text: str) -> int:
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string, got {type(text).__name__}")
    if text == "":
        raise DurationError(
            "an empty string is not a valid duration in either the ISO 8601 format "
            'or Jiff\'s "friendly" format'
        )
    body = text[1:] if text[:1] in "+-" else text
    if body[:1] in ("P", "p"):
        return _parse_iso(text)
    return _parse_friendly(text)


def _fraction_ns(digits: str | None, unit_ns: int) -> int:
    if not digits:
        return 0
    digits = digits[:9]
    return int(digits) * unit_ns // int(10 ** len(digits))  # mypy: `int ** int` is Any


def _parse_iso(text: str) -> int:
    m = _ISO_RE.match(text)
    if m is None:
        raise DurationError(f"failed to parse {text!r} as an ISO 8601 duration")
    if m.group("T") == "T" or m.group("T") == "t":
        raise DurationError(
            "found a time designator (`T` or `t`) in an ISO 8601 duration string, "
            "but did not find any time units"
        )
    parts = [(k, m.group(k)) for k in "YMWDhms" if m.group(k) is not None]
    if not parts:
        raise DurationError("found the start of an ISO 8601 duration, but did not find any units")
    for _k, v in parts[:-1]:
        if "." in v or "," in v:
            raise DurationError("fractional values are only allowed on the smallest unit")
    sizes = {"W": _NS_PER_W, "D": _NS_PER_D, "h": _NS_PER_H, "m": _NS_PER_MIN, "s": _NS_PER_S}
    total = 0
    for k, v in parts:
        whole, _, frac = v.replace(",", ".").partition(".")
        if k in "YM":
            if int(whole) or (frac and int(frac)):
                raise DurationError(_NO_CALENDAR)
            continue
        total += int(whole) * sizes[k] + _fraction_ns(frac, sizes[k])
    if m.group(1) == "-" and total:
        raise DurationError(_NEGATIVE)
    return total


def _parse_friendly(text: str) -> int:
    hms = _HMS_RE.match(text)
    if hms:
        sign, h, mi, s, frac = hms.groups()
        if int(mi) > 59 or int(s) > 59:
            raise DurationError(_FRIENDLY + "minutes and seconds in HH:MM:SS must be below 60")
        total = int(h) * _NS_PER_H + int(mi) * _NS_PER_MIN + int(s) * _NS_PER_S
        total += _fraction_ns(frac, _NS_PER_S)
        if sign == "-" and total:
            raise DurationError(_NEGATIVE)
        return total

    pos = 0
    negative = False
    if text[:1] in "+-":
        negative = text[0] == "-"
        pos = 1
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if text[pos:] == "0":  # jiff accepts a bare zero without a unit
        return 0

    total = 0
    calendar = False
    last_rank = None
    fractional_seen = False
    first = True
    while True:
        num = _NUMBER_RE.match(text, pos)
        if num is None:
            if first:
                raise DurationError(
                    _FRIENDLY + "expected duration to start with a unit value (a decimal integer) "
                    "after an optional sign, but no integer was found"
                )
            raise DurationError(
                _FRIENDLY + f'unparsed input "{text[pos:]}" remains (expected no unparsed input)'
            )
        if fractional_seen:
            raise DurationError(
                _FRIENDLY + f'unparsed input "{text[pos:]}" remains (expected no unparsed input)'
            )
        first = False
        pos = num.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
        unit = _DESIGNATOR_RE.match(text, pos)
        if unit is None:
            raise DurationError(
                _FRIENDLY + "expected to find unit designator suffix "
                "(e.g., `years` or `secs`) after parsing integer"
            )
        rank = _DESIGNATORS[unit.group(1)]
        if last_rank is not None and rank >= last_rank:
            raise DurationError(
                _FRIENDLY + f"found value with unit {unit.group(1)!r} after a unit of the same "
                "or smaller size; units must be written from largest to smallest"
            )
        last_rank = rank
        whole, frac = num.group(1), num.group(2)
        if frac is not None:
            fractional_seen = True
        if rank in (_YEAR, _MONTH):
            if int(whole) or (frac and int(frac)):
                calendar = True
        else:
            size = _UNIT_NS[rank]
            total += int(whole) * size + _fraction_ns(frac, size)
        pos = unit.end()
        # Separators: spaces, or a comma followed by spaces, or nothing at all ("1h30m").
        sep = pos
        while sep < len(text) and text[sep] == " ":
            sep += 1
        if sep < len(text) and text[sep] == ",":
            sep += 1
            while sep < len(text) and text[sep] == " ":
                sep += 1
        rest = text[sep:]
        if rest == "":
            if sep != pos:
                raise DurationError(
                    _FRIENDLY
                    + f'unparsed input "{text[pos:]}" remains (expected no unparsed input)'
                )
            break
        if rest == "ago":
            negative = not negative
            break
        pos = sep
    if calendar:
        raise DurationError(_NO_CALENDAR)
    if negative and total:
        raise DurationError(_NEGATIVE)
    return total


def format_duration(value: int | timedelta) -> str:
    """Print a duration the way Restate's admin API does: `1d 12h`, `1m 30s`, `500ms`, `0s`.

    An int is taken as milliseconds.
    """
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    else:
        us = int(value) * 1_000
    if us < 0:
        raise ValueError("negative duration")
    if us == 0:
        return "0s"
    out = []
    for size, label in (
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "m"),
        (1_000_000, "s"),
        (1_000, "ms"),
        (1, "µs"),
    ):
        n, us = divmod(us, size)
        if n:
            out.append(f"{n}{label}")
    return " ".join(out)


def format_duration_iso(ms: int) -> str:
    """ISO 8601 in seconds, as Restate's SQL tables print durations (`PT86400S`)."""
    seconds, rem = divmod(int(ms), 1000)
    if rem:
        return f"PT{seconds}.{rem:03d}".rstrip("0") + "S"
    return f"PT{seconds}S"
