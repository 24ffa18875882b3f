"""The business day number of an instant, in the issuer's time zone.

Daily limits reset at local midnight, so the limits engine is keyed by the number of days
since 1970-01-01 *in local time*. Working that out through ``datetime`` on every
authorization costs microseconds; instead the UTC offset is cached per 15-minute UTC bucket
(no zone has two transitions within 15 minutes), so the hot path is a dictionary lookup and
two divisions. A bucket
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

# tz name -> (bucket number, UTC offset in seconds valid for the whole bucket)
_offsets: dict[str, tuple[int, int]] = {}
_zones: dict[str, ZoneInfo] = {}


def day_number(epoch_seconds: float, tz: str = DEFAULT_TZ) -> int:
    """Days since 1970-01-01 of the local date of ``epoch_seconds`` in ``tz``."""
    if not math.isfinite(epoch_seconds):
        raise ValueError(f"epoch_seconds must be finite, got {epoch_seconds!r}")
    bucket = int(epoch_seconds // _BUCKET)
    cached = _offsets.get(tz)
    if cached is not None and cached[0] == bucket:
        offset = cached[1]
    else:
        offset = _offset_for(epoch_seconds, bucket, tz)
    return int((epoch_seconds + offset) // _DAY)


def _offset_for(epoch_seconds: float, bucket: int, tz: str) -> int:
    zone = _zone(tz)
    start = bucket * _BUCKET
    first = _utc_offset(start, zone)
    last = _utc_offset(start + _BUCKET - 1, zone)
    if first == last:
        _offsets[tz] = (bucket, first)
        return first
    return _utc_offset(epoch_seconds, zone)


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
