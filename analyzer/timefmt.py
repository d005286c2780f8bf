"""Times for people: the `--tz` zone, absolute times beside relative ones, ISO 8601 for the JSON document, and the
`--since/--until` parser. Capture times stay epoch seconds everywhere in the model; only renderers format them.

`--tz`: `UTC` (the default), `local` (this machine's zone) or an IANA name (`Europe/Paris`, via zoneinfo).
"""
from __future__ import annotations

import datetime as _dt
import re

UTC = _dt.UTC
_MIN, _MAX = -62135596800, 253402300800  # years 1..9999: outside, fromtimestamp raises (a damaged capture)


def parse_tz(name: str | None) -> _dt.tzinfo:
    """`UTC`, `local` or an IANA zone name; ValueError when unknown."""
    if not name or name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    if name.lower() == "local":
        return _dt.datetime.now().astimezone().tzinfo or UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only for a named zone (start-up)

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"unknown time zone {name!r} (use UTC, local or a name such as Europe/Paris)") from e


def _dt_of(ts, tz) -> _dt.datetime | None:
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts != ts or not _MIN <= ts < _MAX:
        return None
    try:
        return _dt.datetime.fromtimestamp(ts, tz or UTC)
    except (OverflowError, OSError, ValueError):
        return None


def zone_name(d: _dt.datetime) -> str:
    return "UTC" if d.utcoffset() == _dt.timedelta(0) and d.tzinfo in (UTC, None) else (d.tzname() or "")


def stamp(ts, tz=None) -> str:
    """'2026-11-27 06:23:53.816 UTC' (the zone's abbreviation), or '?' / the raw number when unusable."""
    d = _dt_of(ts, tz)
    if d is None:
        return "?" if ts is None else str(ts)
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " " + zone_name(d)


def clock(ts, tz=None) -> str:
    """'06:23:53.816': the time of day in the zone (the date is in the session's start line)."""
    d = _dt_of(ts, tz)
    return "" if d is None else d.strftime("%H:%M:%S.%f")[:-3]


def iso(ts, tz=None) -> str | None:
    """ISO 8601 with milliseconds and the offset ('2026-11-27T06:23:53.816Z' in UTC), None when unusable."""
    d = _dt_of(ts, tz)
    if d is None:
        return None
    text = d.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") and tz in (None, UTC) else text


_TOD = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?$")


def parse_time(text: str, tz=None, day_of: float | None = None) -> float:
    """`--since/--until`: epoch seconds, an ISO 8601 date-time ('2026-11-27 06:23:54', '2026-11-27T06:23:54Z',
    '…+01:00'; without an offset it is in `tz`), or a time of day 'HH:MM[:SS[.fff]]' on the day (in `tz`) of
    `day_of` (the first frame of the capture). ValueError when it is none of these."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    tz = tz or UTC
    m = _TOD.match(t)
    if m:
        if day_of is None:
            raise ValueError(f"{text!r}: a time of day needs a capture to take the date from; give a date too")
        day = _dt.datetime.fromtimestamp(day_of, tz).date()
        h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0)
        frac = float(m[4]) if m[4] else 0.0
        d = _dt.datetime(day.year, day.month, day.day, h, mi, sec, tzinfo=tz)
        return d.timestamp() + frac
    try:
        d = _dt.datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a time: give epoch seconds, YYYY-MM-DD HH:MM[:SS] (ISO 8601, optional "
                         "offset) or HH:MM[:SS] on the capture's day") from e
    if d.tzinfo is None:
        d = d.replace(tzinfo=tz)
    return d.timestamp()
