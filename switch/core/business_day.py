"""The business day number of an instant, in the issuer's time zone.

Daily limits reset at local midnight, so the limits engine is keyed by the number of days
since 1970-01-01 *in local time*. Working that out through ``datetime`` on every
authorization costs microseconds; instead the UTC offset is cached per 15-minute UTC bucket
(no zone has two transitions within 15 minutes) and the day number is cached with the part of
the bucket it covers, so the hot path is a dictionary lookup and two comparisons. A bucket
whose two ends have different offsets (the one holding a DST transition) is never cached:
each instant in it is converted exactly. Zones with DST are therefore correct on both sides
of the change; Africa/Algiers (UTC+1 all year) never hits that case.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Africa/Algiers"
_BUCKET = 900
_DAY = 86400
_EDGE = 1e-6

# tz name -> (lo, hi, day): every instant in [lo, hi) has local day number ``day``.
_cache: dict[str, tuple[float, float, int]] = {}
_zones: dict[str, ZoneInfo] = {}


def day_number(epoch_seconds: float, tz: str = DEFAULT_TZ) -> int:
    """Days since 1970-01-01 of the local date of ``epoch_seconds`` in ``tz``."""
    cached = _cache.get(tz)
    if cached is not None and cached[0] <= epoch_seconds < cached[1]:
        return cached[2]
    return _compute(epoch_seconds, tz)


def _compute(epoch_seconds: float, tz: str) -> int:
    if not math.isfinite(epoch_seconds):
        raise ValueError(f"epoch_seconds must be finite, got {epoch_seconds!r}")
    zone = _zone(tz)
    # Whole seconds as ``datetime.fromtimestamp`` sees them: it rounds to the microsecond
    # (half-even), so an instant 0.4 us before midnight already belongs to the next day.
    sec = math.floor(epoch_seconds)
    if round((epoch_seconds - sec) * 1e6) >= 1_000_000:
        sec += 1
    lo = sec - sec % _BUCKET
    hi = lo + _BUCKET
    offset = _utc_offset(lo, zone)
    if offset != _utc_offset(hi - 1, zone):
        # The bucket holds a transition: convert exactly and cache nothing.
        return (sec + _utc_offset(sec, zone)) // _DAY
    day = (sec + offset) // _DAY
    # The offset is constant on [lo, hi): keep the part of it that is inside local day ``day``,
    # less the last microsecond, whose instants may round up into the next second.
    day_lo = day * _DAY - offset
    _cache[tz] = (max(lo, day_lo), min(hi, day_lo + _DAY) - _EDGE, day)
    return day


def _utc_offset(epoch_seconds: float, zone: ZoneInfo) -> int:
    delta = datetime.fromtimestamp(epoch_seconds, zone).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


def _zone(tz: str) -> ZoneInfo:
    zone = _zones.get(tz)
    if zone is None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"tz {tz!r} is not a known IANA time zone") from None
        _zones[tz] = zone
    return zone
